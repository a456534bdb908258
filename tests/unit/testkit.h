/*
 * What several unit tests need alike (header-only, tests/unit/ is on the
 * include path of every unit test).
 */
#ifndef HERALD_TESTKIT_H
#define HERALD_TESTKIT_H

#include <stdio.h>

#include "base/config.h"

/* Adds a namespace named `name` to cfg, with the options of the defaults
 * (namespaces[0]); returns it for the test to change. */
static inline config_ns *testkit_add_ns(config *cfg, const char *name)
{
    config_ns *ns = &cfg->namespaces[cfg->n_namespaces++];
    *ns = cfg->namespaces[0];
    snprintf(ns->name, sizeof(ns->name), "%s", name);
    return ns;
}

#endif
