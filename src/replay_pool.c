/* replay_pool.c -- rp_parallel: run n tasks on the calling thread and n - 1 parked workers.
 *
 * ac_eval_batch splits its rows into one task per thread.  Starting threads
 * per call costs tens of microseconds, as much as replaying 1,000 rows of
 * the MLP loss, so the workers are started once and park on a condition
 * variable between calls.  One caller at a time uses the pool (another
 * concurrent caller starts threads of its own); a child process after
 * fork() starts with an empty pool.  Without POSIX threads, or when a
 * thread cannot start, the tasks run one after another on the caller.
 * Touches nothing but its own state and the tasks it is given.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#include <stdlib.h>
#include "replay_block.h"

#if !defined(_WIN32) || defined(__MINGW32__)
#include <pthread.h>

#define RP_POOL_MAX 256

typedef struct rp_worker {
    pthread_t tid;
    pthread_mutex_t lock;
    pthread_cond_t wake;      /* signalled for a new task and for its end */
    void (*fn)(void *);
    void *arg;
    int state;                /* 0 parked, 1 task posted, 2 task done */
} rp_worker;

static pthread_mutex_t rp_pool_lock = PTHREAD_MUTEX_INITIALIZER;   /* the pool's one user */
static rp_worker *rp_workers[RP_POOL_MAX];
static int rp_n_workers;
static pthread_once_t rp_pool_once = PTHREAD_ONCE_INIT;

static void *rp_worker_main(void *arg)
{
    rp_worker *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (w->state != 1) pthread_cond_wait(&w->wake, &w->lock);
        pthread_mutex_unlock(&w->lock);
        w->fn(w->arg);
        pthread_mutex_lock(&w->lock);
        w->state = 2;
        pthread_cond_broadcast(&w->wake);
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

void rp_parallel(void (*fn)(void *), void *items, size_t size, int n)
{
    char *it = items;
    int t, have;
    if (n <= 1) {
        if (n == 1) fn(items);
        return;
    }
    pthread_once(&rp_pool_once, rp_pool_setup);
    if (pthread_mutex_trylock(&rp_pool_lock) != 0) {
        rp_parallel_fresh(fn, it, size, n);
        return;
    }
    have = rp_pool_grow(n - 1);
    for (t = 0; t < have && t < n - 1; ++t) {
        rp_worker *w = rp_workers[t];
        pthread_mutex_lock(&w->lock);
        w->fn = fn;
        w->arg = it + (size_t)(t + 1) * size;
        w->state = 1;
        pthread_cond_broadcast(&w->wake);
        pthread_mutex_unlock(&w->lock);
    }
    fn(it);
    for (t = have + 1; t < n; ++t) fn(it + (size_t)t * size);   /* tasks no worker took */
    for (t = 0; t < have && t < n - 1; ++t) {
        rp_worker *w = rp_workers[t];
        pthread_mutex_lock(&w->lock);
        while (w->state != 2) pthread_cond_wait(&w->wake, &w->lock);
        w->state = 0;
        pthread_mutex_unlock(&w->lock);
    }
    pthread_mutex_unlock(&rp_pool_lock);
}

#else   /* no POSIX threads: one after another */

void rp_parallel(void (*fn)(void *), void *items, size_t size, int n)
{
    char *it = items;
    int t;
    for (t = 0; t < n; ++t) fn(it + (size_t)t * size);
}

#endif
