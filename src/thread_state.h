/* thread_state.h -- per-thread recorder state, read on every recorded op.
 *
 * A C thread-local is one load; Python's threading.local would be a dict
 * lookup.  The tape pointer is borrowed: src/tape_memory.pxi keeps each thread's
 * Tape alive in a threading.local, so it dies with its thread.  So is the
 * trace pointer: the _Trace object (src/replay.pxi) that set it is alive
 * until it puts the previous one back.  Only comparisons, value reads and
 * no_grad results look at it; the recording path never does. */
#ifndef AUTOGRAD_C_THREAD_STATE_H
#define AUTOGRAD_C_THREAD_STATE_H

#if defined(_MSC_VER)
#define AC_THREAD_LOCAL __declspec(thread)
#elif defined(__GNUC__) && defined(__ELF__)
/* initial-exec: a direct %fs-relative load instead of a __tls_get_addr call
 * per op; 24 bytes fit the static TLS surplus glibc keeps for dlopen'ed code. */
#define AC_THREAD_LOCAL __thread __attribute__((tls_model("initial-exec")))
#else
#define AC_THREAD_LOCAL __thread
#endif

typedef struct ac_thread_state {
    void *tape;          /* this thread's Tape object, NULL until first use */
    int grad_enabled;    /* 0 inside no_grad(): ops compute values only */
    int anomaly;         /* 1 inside detect_anomaly(): non-finite results raise */
    void *trace;         /* the _Trace being recorded (ag.compile tracing a function), or NULL */
} ac_thread_state;

static AC_THREAD_LOCAL ac_thread_state ac_thread_state_ = {0, 1, 0, 0};

static inline ac_thread_state *ac_this_thread(void) { return &ac_thread_state_; }

#endif /* AUTOGRAD_C_THREAD_STATE_H */
