/*
 * Retention of durable history (store_priv.h): not running yet; the
 * retention pass (retention_age, retention_count) comes with issue 5.
 */
#include "store_priv.h"

void store_retention_start(store *s)
{
    (void)s;
}

void store_retention_stop(store *s)
{
    (void)s;
}
