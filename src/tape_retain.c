/* tape_retain.c -- a dead graph's memory, kept a moment for the next recording.
 *
 * When the last recorded Variable of a tape dies, its large arrays used to
 * be freed, and the next recording faulted all that memory in again: about
 * 1.5 us per 4 KiB page, 6 ns per 16-byte node, a quarter of what recording
 * a chain node costs (docs/architecture.md, "Memory", has the figures).
 * Instead the tape hands the large part of its arrays to ac_retain() and
 * keeps only the first AC_SHRINK_ABOVE entries in use.  A background thread
 * (the reaper) gives the pages of what is still handed over back to the OS
 * when the record's deadline passes (madvise MADV_DONTNEED: the arrays stay
 * allocated, those pages go and read back as zeros).  The owner takes parts
 * back as its next graph grows into them (ac_retain_take), which also moves
 * the deadline: a graph that keeps growing keeps the rest for as long again
 * as it has been growing, plus ac_retain_seconds.  So a program that records
 * large graphs back to back reuses warm memory, and memory the next graph
 * does not reach (or every byte, when no graph follows) goes back to the OS
 * about ac_retain_seconds after the graph died.
 *
 * Linux only, where MADV_DONTNEED returns private anonymous pages at once;
 * elsewhere ac_retain() refuses and the caller frees the arrays as before.
 * Plain C and POSIX threads; no Python API (the reaper never takes the GIL).
 */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE        /* madvise, clock_gettime, pthread_condattr_setclock under -std=c99 */
#endif
#include <math.h>
#include "tape.h"

double ac_retain_seconds = 1.0;

#if defined(__linux__)
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum { AC_RETAIN_KEPT = 1, AC_RETAIN_RELEASED = 2 };

static pthread_mutex_t ac_retain_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ac_retain_wake;
static int ac_reaper_started;             /* under the lock */
static ac_retained *ac_retain_head;       /* kept records in deadline order, under the lock */

static double ac_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The whole pages inside each range go back to the OS; partial pages at
 * the ends keep their bytes, so nothing outside a range is ever touched. */
static void ac_release_pages(ac_retained *r)
{
    static uintptr_t page;
    int k;
    if (page == 0) {
        long s = sysconf(_SC_PAGESIZE);
        page = s > 0 ? (uintptr_t)s : 4096;
    }
    for (k = 0; k < r->nblocks; ++k) {
        uintptr_t lo = ((uintptr_t)r->block[k] + r->lo[k] + page - 1) & ~(page - 1);
        uintptr_t hi = ((uintptr_t)r->block[k] + r->hi[k]) & ~(page - 1);
        if (r->hi[k] > r->lo[k] && hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
}

static void ac_unlink_record(ac_retained *r)
{
    if (r->prev != NULL) r->prev->next = r->next;
    else ac_retain_head = r->next;
    if (r->next != NULL) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Insert a kept record in deadline order (from the tail: deadlines mostly
 * grow); wake the reaper if it now comes first. */
static void ac_insert_record(ac_retained *r)
{
    ac_retained *at = ac_retain_head;
    while (at != NULL && at->next != NULL) at = at->next;
    while (at != NULL && at->deadline > r->deadline) at = at->prev;
    r->prev = at;
    r->next = at != NULL ? at->next : ac_retain_head;
    if (r->next != NULL) r->next->prev = r;
    if (at != NULL) at->next = r;
    else ac_retain_head = r;
    if (ac_retain_head == r) pthread_cond_signal(&ac_retain_wake);
}

/* Release every kept record whose deadline has passed (all of them with
 * now = INFINITY).  Under the lock. */
static void ac_release_due(double now)
{
    while (ac_retain_head != NULL && ac_retain_head->deadline <= now) {
        ac_retained *r = ac_retain_head;
        ac_unlink_record(r);
        ac_release_pages(r);
        r->state = AC_RETAIN_RELEASED;
    }
}

static void *ac_reaper(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&ac_retain_lock);
    for (;;) {
        ac_release_due(ac_now());
        if (ac_retain_head == NULL) {
            pthread_cond_wait(&ac_retain_wake, &ac_retain_lock);
        } else {
            double at = ac_retain_head->deadline;
            struct timespec ts;
            ts.tv_sec = (time_t)at;
            ts.tv_nsec = (long)((at - (double)ts.tv_sec) * 1e9);
            if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
            pthread_cond_timedwait(&ac_retain_wake, &ac_retain_lock, &ts);
        }
    }
    return NULL;
}

/* fork(): the child has no reaper thread; it gives back at once what its
 * parent kept (the child did not record those graphs) and starts its own
 * reaper when it next retains something. */
static void ac_retain_prepare(void) { pthread_mutex_lock(&ac_retain_lock); }
static void ac_retain_parent(void) { pthread_mutex_unlock(&ac_retain_lock); }
static void ac_retain_child(void)
{
    ac_release_due(INFINITY);
    ac_reaper_started = 0;
    pthread_mutex_unlock(&ac_retain_lock);
}

/* Under the lock: the reaper thread runs, or -1. */
static int ac_start_reaper(void)
{
    static int atfork_done;
    pthread_condattr_t ca;
    pthread_attr_t ta;
    pthread_t thread;
    int rc;
    if (ac_reaper_started) return 0;
    if (!atfork_done) {
        if (pthread_atfork(ac_retain_prepare, ac_retain_parent, ac_retain_child) != 0) return -1;
        atfork_done = 1;
    }
    if (pthread_condattr_init(&ca) != 0) return -1;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);     /* deadlines are monotonic */
    rc = pthread_cond_init(&ac_retain_wake, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0) return -1;
    if (pthread_attr_init(&ta) != 0) return -1;
    pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&ta, 64 * 1024);
    rc = pthread_create(&thread, &ta, ac_reaper, NULL);
    pthread_attr_destroy(&ta);
    if (rc != 0) {
        pthread_cond_destroy(&ac_retain_wake);
        return -1;
    }
    ac_reaper_started = 1;
    return 0;
}

int ac_retain(ac_retained *r, void *const *blocks, const size_t *lo, const size_t *hi, int n)
{
    int k;
    if (r->registered || n < 1 || n > AC_RETAIN_BLOCKS || !(ac_retain_seconds > 0.0)) return -1;
    pthread_mutex_lock(&ac_retain_lock);
    if (ac_start_reaper() < 0) {
        pthread_mutex_unlock(&ac_retain_lock);
        return -1;
    }
    r->nblocks = n;
    for (k = 0; k < n; ++k) {
        r->block[k] = blocks[k];
        r->lo[k] = lo[k];
        r->hi[k] = hi[k];
    }
    r->since = ac_now();
    r->deadline = r->since + ac_retain_seconds;
    r->state = AC_RETAIN_KEPT;
    ac_insert_record(r);
    pthread_mutex_unlock(&ac_retain_lock);
    r->registered = 1;
    return 0;
}

void ac_retain_take(ac_retained *r, const void *block, size_t upto)
{
    int k;
    double now;
    if (!r->registered) return;
    for (k = 0; k < r->nblocks && r->block[k] != block; ++k) {}
    if (k == r->nblocks || r->lo[k] >= upto || r->lo[k] >= r->hi[k]) return;
    pthread_mutex_lock(&ac_retain_lock);      /* waits for a release in progress */
    r->lo[k] = upto < r->hi[k] ? upto : r->hi[k];
    if (r->state == AC_RETAIN_KEPT) {
        /* still growing: keep the rest as long again as the graph has grown */
        now = ac_now();
        if (now + ac_retain_seconds + (now - r->since) > r->deadline) {
            ac_unlink_record(r);
            r->deadline = now + ac_retain_seconds + (now - r->since);
            ac_insert_record(r);
        }
    }
    pthread_mutex_unlock(&ac_retain_lock);
}

void ac_retain_end(ac_retained *r)
{
    if (!r->registered) return;
    pthread_mutex_lock(&ac_retain_lock);
    if (r->state == AC_RETAIN_KEPT) ac_unlink_record(r);
    r->state = 0;
    pthread_mutex_unlock(&ac_retain_lock);
    r->registered = 0;
    r->nblocks = 0;
}

size_t ac_retained_bytes(ac_retained *r)
{
    size_t kept = 0;
    int k;
    if (!r->registered) return 0;
    pthread_mutex_lock(&ac_retain_lock);
    if (r->state == AC_RETAIN_KEPT)
        for (k = 0; k < r->nblocks; ++k)
            if (r->hi[k] > r->lo[k]) kept += r->hi[k] - r->lo[k];
    pthread_mutex_unlock(&ac_retain_lock);
    return kept;
}

void ac_release_retained_now(void)
{
    pthread_mutex_lock(&ac_retain_lock);
    ac_release_due(INFINITY);
    pthread_mutex_unlock(&ac_retain_lock);
}

#else   /* no retention: the caller frees the arrays when the graph dies */

int ac_retain(ac_retained *r, void *const *blocks, const size_t *lo, const size_t *hi, int n)
{
    (void)r; (void)blocks; (void)lo; (void)hi; (void)n;
    return -1;
}

void ac_retain_take(ac_retained *r, const void *block, size_t upto) { (void)r; (void)block; (void)upto; }
void ac_retain_end(ac_retained *r) { (void)r; }
size_t ac_retained_bytes(ac_retained *r) { (void)r; return 0; }
void ac_release_retained_now(void) {}

#endif
