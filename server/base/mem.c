/*
 * Allocation with the abort-on-failure policy of mem.h.
 */
#include "base/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *mem_check(void *p)
{
    if (!p)
        abort();
    return p;
}

void *mem_alloc(size_t n)
{
    return mem_check(malloc(n ? n : 1));
}

void *mem_calloc(size_t n, size_t size)
{
    return mem_check(calloc(n ? n : 1, size ? size : 1));
}

void *mem_realloc(void *p, size_t n)
{
    return mem_check(realloc(p, n ? n : 1));
}

void *mem_realloc_array(void *p, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        abort();
    return mem_realloc(p, n * size);
}

char *mem_strdup(const char *s)
{
    return mem_check(strdup(s));
}
