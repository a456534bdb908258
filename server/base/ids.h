/*
 * Identifiers: client ids and channel epochs are 16 lowercase hex digits of
 * a 64-bit random value. Each thread keeps its own generator state, seeded
 * from getrandom(2), so making an id takes no lock.
 */
#ifndef HERALD_IDS_H
#define HERALD_IDS_H

#include <stdint.h>

#define IDS_LEN 16                 /* client id and epoch length */

typedef struct ids_rng {
    uint64_t s[2];
} ids_rng;

void ids_rng_seed(ids_rng *r);
uint64_t ids_next(ids_rng *r);
/* Writes IDS_LEN hex digits and a NUL into out. */
void ids_hex(uint64_t v, char out[IDS_LEN + 1]);

#endif
