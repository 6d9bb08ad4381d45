/*
 * lock.c -- the store lock, cooperative with the GIL.
 *
 * HOW IT WORKS
 *   The store is touched in two ways:
 *     1. ordinary operations (get, set, delete, ...): short, run entirely under the GIL
 *        and never release it, never call Python code, never allocate Python objects;
 *     2. bulk operations (invalidating a tag or prefix over many entries, clear, large
 *        expiry sweeps): take the store by setting `busy` while holding the GIL, then
 *        release the GIL, unlink entries, give the store back, retake the GIL, and only
 *        then drop the Python references they collected.
 *   Mutual exclusion follows: an ordinary operation starts only after seeing busy == 0
 *   under the GIL, and busy goes from 0 to 1 only under the GIL, so it cannot start
 *   while another ordinary operation (which holds the GIL throughout) is running; and
 *   ordinary operations never start while busy == 1. The uncontended cost for an
 *   ordinary operation is one acquire load: no atomic read-modify-write on the hot path.
 *
 *   A thread that finds the store busy releases the GIL and sleeps on `cv` until the
 *   bulk operation gives the store back; then it retakes the GIL and checks again.
 *   The bulk thread never needs the GIL to give the store back, so a thread that must
 *   wait while keeping the GIL (garbage collection, fork) may do so without deadlock.
 *
 * LIMITATIONS
 *   This relies on the GIL for ordinary operations; free-threaded CPython builds are not
 *   supported (the build refuses Py_GIL_DISABLED).
 */
#include "lock.h"

int tc_lock_init(tc_lock *l) {
    atomic_store_explicit(&l->busy, 0, memory_order_relaxed);
    l->waiters = 0;
    if (pthread_mutex_init(&l->mu, NULL) != 0) return -1;
    if (pthread_cond_init(&l->cv, NULL) != 0) {
        pthread_mutex_destroy(&l->mu);
        return -1;
    }
    return 0;
}

void tc_lock_destroy(tc_lock *l) {
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
}

void tc_lock_reinit(tc_lock *l) {
    /* The parent's other threads do not exist in the child; their state in mu/cv is
     * meaningless. Re-create both (the old ones may be held and must not be used). */
    atomic_store_explicit(&l->busy, 0, memory_order_relaxed);
    l->waiters = 0;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
}

void tc_lock_give(tc_lock *l) {
    pthread_mutex_lock(&l->mu);
    atomic_store_explicit(&l->busy, 0, memory_order_release);
    if (l->waiters) pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void tc_lock_wait_idle(tc_lock *l) {
    pthread_mutex_lock(&l->mu);
    l->waiters++;
    while (atomic_load_explicit(&l->busy, memory_order_acquire))
        pthread_cond_wait(&l->cv, &l->mu);
    l->waiters--;
    pthread_mutex_unlock(&l->mu);
}
