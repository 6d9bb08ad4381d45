/* lock.h -- the store lock, cooperative with the GIL (see lock.c). Plain C. */
#ifndef TIEREDCACHE_LOCK_H
#define TIEREDCACHE_LOCK_H

#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

typedef struct tc_lock {
    _Atomic int busy; /* a bulk operation owns the store and may run without the GIL */
    int waiters;      /* threads in tc_lock_wait_idle (guarded by mu)                */
    pthread_mutex_t mu;
    pthread_cond_t cv;
} tc_lock;

int tc_lock_init(tc_lock *l);
void tc_lock_destroy(tc_lock *l);
void tc_lock_reinit(tc_lock *l); /* in a forked child: forget the parent's threads */

static inline int tc_lock_busy(tc_lock *l) {
    return atomic_load_explicit(&l->busy, memory_order_acquire);
}

/* Take the store for a bulk operation. The caller holds the GIL and has just seen
 * !tc_lock_busy(): nobody else can take it in between, because taking it needs the
 * GIL. */
static inline void tc_lock_take(tc_lock *l) {
    atomic_store_explicit(&l->busy, 1, memory_order_release);
}

void tc_lock_give(tc_lock *l);      /* end the bulk operation; GIL not needed       */
void tc_lock_wait_idle(tc_lock *l); /* block until !busy; GIL not needed (see .c)   */

#endif
