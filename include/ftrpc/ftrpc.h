/* ftrpc: a fault-tolerant RPC framework in C. Include this header only. */
#ifndef FTRPC_H
#define FTRPC_H

#include "ftrpc/common.h"
#include "ftrpc/buf.h"
#include "ftrpc/log.h"
#include "ftrpc/runtime.h"
#include "ftrpc/server.h"
#include "ftrpc/client.h"
#include "ftrpc/selective.h"
#include "ftrpc/naming.h"
#include "ftrpc/metrics.h"
#include "ftrpc/json.h"
#include "ftrpc/rpcz.h"

#endif
