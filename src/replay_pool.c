/* replay_pool.c -- rp_parallel: run n tasks on the calling thread and n - 1 parked workers.
 *
 * ac_eval_batch splits its rows into one task per thread.  Starting threads
 * per call costs tens of microseconds, as much as replaying 1,000 rows of
 * the MLP loss, so the workers are started once and wait between calls;
 * the tasks' buffers are kept between calls too (a fresh allocation costs
 * page faults).  One caller at a time owns the pool (rp_pool_acquire); a
 * concurrent or nested caller (a Function's hook that replays) starts
 * threads and allocates buffers of its own.  A child process after fork()
 * starts with no workers.  Without POSIX threads, or when a thread cannot
 * start, the tasks run one after another on the caller.  Touches nothing
 * but its own state and the tasks it is given.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdlib.h>
#include "replay_block.h"

#if !defined(_WIN32) || defined(__MINGW32__)
#include <pthread.h>
#include <sched.h>

#define RP_POOL_MAX 256
#define RP_POOL_KEEP_BYTES ((size_t)64 << 20)   /* larger task buffers are not kept */

typedef struct rp_worker {
    pthread_t tid;
    pthread_mutex_t lock;
    pthread_cond_t wake;      /* signalled for a new task and for its end */
    void (*fn)(void *);
    void *arg;
    int state;                /* 0 idle, 1 task posted, 2 task done; written under lock */
} rp_worker;

static pthread_mutex_t rp_pool_lock = PTHREAD_MUTEX_INITIALIZER;   /* the pool's one user */
static rp_worker *rp_workers[RP_POOL_MAX];
static int rp_n_workers;
static pthread_once_t rp_pool_once = PTHREAD_ONCE_INIT;
static void *rp_buffers[RP_POOL_MAX + 1];    /* task t's buffer, kept between calls */
static size_t rp_buffer_bytes[RP_POOL_MAX + 1];

/* Waiting for a state: spin a while first, then sleep on the condition
 * variable.  Waking a sleeping thread costs tens of microseconds (more on a
 * virtual machine, where it wakes a halted virtual CPU), as much as
 * replaying a thousand rows; a training loop calls again within that time.
 * state changes under w->lock, with release stores the spin reads with
 * acquire loads.  RP_POOL_SPINS=0 builds without spinning (for helgrind,
 * which does not follow atomics). */
#ifndef RP_POOL_SPINS
#define RP_POOL_SPINS 4096
#endif
#define RP_YIELD_EVERY 64         /* spins between two sched_yield() calls (see rp_wait_state) */
#if defined(__GNUC__) || defined(__clang__)
#define RP_STATE(w) __atomic_load_n(&(w)->state, __ATOMIC_ACQUIRE)
#define RP_SET_STATE(w, v) __atomic_store_n(&(w)->state, (v), __ATOMIC_RELEASE)
#if defined(__x86_64__) || defined(__i386__)
#define RP_RELAX() __builtin_ia32_pause()
#else
#define RP_RELAX() ((void)0)
#endif
#else
#undef RP_POOL_SPINS
#define RP_POOL_SPINS 0
#define RP_STATE(w) ((w)->state)
#define RP_SET_STATE(w, v) ((w)->state = (v))
#define RP_RELAX() ((void)0)
#endif

/* Spinning yields the CPU every `every` spins: on a shared machine the
 * thread waited for may be queued behind the spinner on the same CPU, and
 * pure spinning kept it from running (2 threads on 1,000 rows then took 3x
 * as long as 1; with the yields about as long as 1, and 1.6x faster when
 * each thread has a CPU).  The caller waiting for a worker yields often
 * (every RP_YIELD_EVERY spins); a worker waiting for its next task rarely
 * (8 times less), since a yield may hand its CPU to another process. */
static void rp_wait_state(rp_worker *w, int want, long spins, long every)
{
    long i;
    for (i = 0; i < spins; ++i) {
        if (RP_STATE(w) == want) return;
        RP_RELAX();
        if (i % every == every - 1) sched_yield();
    }
    pthread_mutex_lock(&w->lock);
    while (w->state != want) pthread_cond_wait(&w->wake, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

static void rp_set_state(rp_worker *w, int v)
{
    pthread_mutex_lock(&w->lock);
    RP_SET_STATE(w, v);
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

static void *rp_worker_main(void *arg)
{
    rp_worker *w = arg;
    for (;;) {
        rp_wait_state(w, 1, RP_POOL_SPINS, 8 * RP_YIELD_EVERY);
        w->fn(w->arg);
        rp_set_state(w, 2);
    }
    return NULL;
}

/* In a child after fork() only the forking thread exists: forget the
 * workers (their memory stays; it is small) and free the pool. */
static void rp_pool_after_fork(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    rp_pool_lock = fresh;
    rp_n_workers = 0;
}

static void rp_pool_setup(void)
{
    pthread_atfork(NULL, NULL, rp_pool_after_fork);
}

/* Workers up to `want`; returns how many there are. */
static int rp_pool_grow(int want)
{
    while (rp_n_workers < want && rp_n_workers < RP_POOL_MAX) {
        rp_worker *w = calloc(1, sizeof *w);
        pthread_attr_t attr;
        int ok;
        if (w == NULL) break;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->wake, NULL);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        ok = pthread_create(&w->tid, &attr, rp_worker_main, w) == 0;
        pthread_attr_destroy(&attr);
        if (!ok) {
            pthread_cond_destroy(&w->wake);
            pthread_mutex_destroy(&w->lock);
            free(w);
            break;
        }
        rp_workers[rp_n_workers++] = w;
    }
    return rp_n_workers;
}

typedef struct rp_task {
    void (*fn)(void *);
    void *arg;
} rp_task;

static void *rp_task_main(void *task)
{
    rp_task *t = task;
    t->fn(t->arg);
    return NULL;
}

/* The pool is busy: threads of this call's own. */
static void rp_parallel_fresh(void (*fn)(void *), char *items, size_t size, int n)
{
    pthread_t *tid = malloc((size_t)n * sizeof *tid);
    rp_task *tasks = malloc((size_t)n * sizeof *tasks);
    int t, started = 1;
    if (tid == NULL || tasks == NULL) {
        for (t = 0; t < n; ++t) fn(items + (size_t)t * size);
    } else {
        for (t = 1; t < n; ++t) {
            tasks[t].fn = fn;
            tasks[t].arg = items + (size_t)t * size;
            if (pthread_create(&tid[t], NULL, rp_task_main, &tasks[t]) != 0) break;
            ++started;
        }
        fn(items);
        for (t = 1; t < started; ++t) pthread_join(tid[t], NULL);
        for (t = started; t < n; ++t) fn(items + (size_t)t * size);
    }
    free(tid);
    free(tasks);
}

int rp_pool_acquire(void)
{
    pthread_once(&rp_pool_once, rp_pool_setup);
    return pthread_mutex_trylock(&rp_pool_lock) == 0;
}

void rp_pool_release(void)
{
    pthread_mutex_unlock(&rp_pool_lock);
}

void *rp_pool_buffer(int t, size_t bytes)
{
    void *q = NULL;
    if (t < 0 || t > RP_POOL_MAX || bytes > RP_POOL_KEEP_BYTES) return NULL;
    if (rp_buffer_bytes[t] >= bytes) return rp_buffers[t];
    bytes = (bytes + 4095) & ~(size_t)4095;
    if (posix_memalign(&q, 64, bytes) != 0) return NULL;
    free(rp_buffers[t]);
    rp_buffers[t] = q;
    rp_buffer_bytes[t] = bytes;
    return q;
}

void rp_parallel(void (*fn)(void *), void *items, size_t size, int n, int owned)
{
    char *it = items;
    int t, have;
    if (n <= 1) {
        if (n == 1) fn(items);
        return;
    }
    if (!owned) {
        rp_parallel_fresh(fn, it, size, n);
        return;
    }
    have = rp_pool_grow(n - 1);
    for (t = 0; t < have && t < n - 1; ++t) {
        rp_worker *w = rp_workers[t];
        w->fn = fn;                     /* published by the release store of state */
        w->arg = it + (size_t)(t + 1) * size;
        rp_set_state(w, 1);
    }
    fn(it);
    for (t = have + 1; t < n; ++t) fn(it + (size_t)t * size);   /* tasks no worker took */
    for (t = 0; t < have && t < n - 1; ++t) {
        rp_worker *w = rp_workers[t];
        rp_wait_state(w, 2, 16L * RP_POOL_SPINS, RP_YIELD_EVERY);
        rp_set_state(w, 0);
    }
}

#else   /* no POSIX threads: one after another, buffers from malloc */

int rp_pool_acquire(void) { return 0; }
void rp_pool_release(void) {}
void *rp_pool_buffer(int t, size_t bytes) { (void)t; (void)bytes; return NULL; }

void rp_parallel(void (*fn)(void *), void *items, size_t size, int n, int owned)
{
    char *it = items;
    int t;
    (void)owned;
    for (t = 0; t < n; ++t) fn(it + (size_t)t * size);
}

#endif
