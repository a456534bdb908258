/*
 * Herald's out-of-memory policy, decided once: allocation failure aborts
 * the process (as h2o and redis do). A server that cannot allocate cannot
 * keep its promises to clients either, and a crash is restarted and
 * recovered from (streams continue from the store, clients recover with
 * since), while code that tried to carry on half-allocated would not be.
 * Every allocation in server/ goes through these.
 */
#ifndef HERALD_BASE_MEM_H
#define HERALD_BASE_MEM_H

#include <stddef.h>

void *mem_alloc(size_t n);
void *mem_calloc(size_t n, size_t size);
void *mem_realloc(void *p, size_t n);
/* realloc for an array of n elements of `size` bytes (overflow aborts). */
void *mem_realloc_array(void *p, size_t n, size_t size);
char *mem_strdup(const char *s);

#endif
