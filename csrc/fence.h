/* fence.h -- the invalidation fence of a LocalCache (see fence.c). Plain C. */
#ifndef TIEREDCACHE_FENCE_H
#define TIEREDCACHE_FENCE_H

#include <pthread.h>

typedef struct {
    int pending;          /* raised when the watched socket has data; atomics only */
    int running;          /* a watcher thread exists (joinable) */
    int stopping;         /* guarded by mu */
    int wake[2];          /* a pipe that ends the watcher's poll */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;    /* the watcher waits here until the fence is lowered */
    int fd;
} tc_fence;

/* 0, or -1 (errno) when the mutex or condition cannot be created. */
int tc_fence_init(tc_fence *f);
/* Stops any watcher, then frees the mutex and condition. */
void tc_fence_destroy(tc_fence *f);

/* Start a thread that raises the fence whenever fd has data (replacing a previous
 * watcher). 0, or -1 with errno. Blocks while joining a previous watcher: call without
 * the GIL. */
int tc_fence_watch(tc_fence *f, int fd);
/* Stop and join the watcher, if any (without the GIL). */
void tc_fence_unwatch(tc_fence *f);

/* Lower the fence; returns whether it was raised (and lets the watcher look again).
 * Lower it only after applying everything read from the socket: see fence.c. */
int tc_fence_take(tc_fence *f);

/* Raise the fence by hand: before reading the socket for another reason (a SUBSCRIBE
 * whose confirmations may come behind messages), so that no reader trusts L1 while
 * messages sit read but unapplied. */
static inline void tc_fence_raise(tc_fence *f) { __atomic_store_n(&f->pending, 1, __ATOMIC_RELEASE); }

static inline int tc_fence_pending(tc_fence *f) { return __atomic_load_n(&f->pending, __ATOMIC_ACQUIRE); }

/* Raised, or data already waiting in the watched socket (a zero-timeout poll: raises
 * the fence). The check readers make before trusting L1: it closes the window in which
 * a message has arrived but the watcher thread has not run yet. */
int tc_fence_probe(tc_fence *f);

/* Wait up to timeout_ms for fd to be readable, raising the fence when it is: 1
 * readable, 0 timeout, -1 error (errno). */
int tc_fence_wait_readable(tc_fence *f, int fd, int timeout_ms);

/* In a forked child: the watcher thread does not exist there; forget it. */
void tc_fence_after_fork_child(tc_fence *f);

#endif
