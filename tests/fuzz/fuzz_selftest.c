/*
 * The fuzzing runner's own test (selftest.sh): a harness that misbehaves on
 * purpose for three inputs, so that a run of tests/fuzz/run.sh is shown to
 * fail on a heap overflow (ASan), a leak (LeakSanitizer) and undefined
 * behaviour (UBSan), and to pass on anything else. Not a harness of Herald
 * code.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int selftest_is(const uint8_t *data, size_t size, const char *word)
{
    size_t n = strlen(word);
    return size == n && memcmp(data, word, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (selftest_is(data, size, "overflow")) {
        /* A size UBSan cannot see, so ASan is the one to report. */
        volatile size_t n = 8;
        char *p = malloc(n);
        volatile char c = p[n];   /* one past the end */
        (void)c;
        free(p);
    } else if (selftest_is(data, size, "leak")) {
        char *volatile p = malloc(64);
        p[0] = 1;
        p = NULL;                 /* lost */
    } else if (selftest_is(data, size, "ub")) {
        volatile int big = INT32_MAX;
        volatile int r = big + (int)size;   /* signed overflow */
        (void)r;
    }
    return 0;
}
