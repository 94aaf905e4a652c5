/* check.h - the checks of a node's settings, each failing the call with
 * INVALID_ARGUMENT naming the field (check.c). */
#ifndef ROUTERD_CHECK_H
#define ROUTERD_CHECK_H

#include "fd/rpc.h"
#include "regions.h"
#include "store.h"

#define MAX_NAME 100
#define MAX_TAGS 32
#define MAX_TAG 64
#define MAX_URL 255
#define MAX_DOMAIN 64
#define MAX_REASON 200
#define MAX_CAPACITY 10000000
#define MAX_WEIGHT 10000

/* The settings a register or an update ends with, checked together. */
int check_node(fd_call_t *call, const regions_t *regions, const node_settings_t *in) FD_MUSTCHECK;

#endif
