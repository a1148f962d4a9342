/* The public JSON API (ftrpc/json.h): a protoset is pb_descset.c's set, the transcoding
 * json_pb.c's; these are thin wrappers over ftrpc_buf (an ft_iobuf) and malloc'ed text. */
#include "ftrpc/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/iobuf.h"
#include "base/strbuf.h"
#include "protocol/json_pb.h"
#include "protocol/pb_descset.h"

static int bad_args(char *err, size_t errlen)
{
    if (err && errlen) snprintf(err, errlen, "invalid arguments");
    return FTRPC_EINVAL;
}

int ftrpc_protoset_new(const void *data, size_t len, ftrpc_protoset **out, char *err, size_t errlen)
{
    if ((!data && len) || !out) return bad_args(err, errlen);
    ft_descset *set = NULL;
    int rc = ft_descset_new(data, len, &set, err, errlen);
    if (rc == 0) *out = (ftrpc_protoset *)set;
    return rc;
}

void ftrpc_protoset_free(ftrpc_protoset *set)
{
    ft_descset_free((ft_descset *)set);
}

const ProtobufCMethodDescriptor *ftrpc_protoset_method(const ftrpc_protoset *set,
                                                       const char *service, const char *method)
{
    return ft_descset_method((const ft_descset *)set, service, method);
}

const ProtobufCMessageDescriptor *ftrpc_protoset_message(const ftrpc_protoset *set,
                                                         const char *name)
{
    return ft_descset_message((const ft_descset *)set, name);
}

int ftrpc_json_to_pb(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
                     ftrpc_buf *out, char *err, size_t errlen)
{
    if (!desc || (!json && len) || !out) return bad_args(err, errlen);
    return ft_json_to_pb_bytes(desc, json, len, (ft_iobuf *)out, err, errlen);
}

int ftrpc_pb_to_json(const ProtobufCMessageDescriptor *desc, const ftrpc_buf *pb, char **json,
                     char *err, size_t errlen)
{
    if (!desc || !pb || !json) return bad_args(err, errlen);
    const ft_iobuf *b = (const ft_iobuf *)pb;
    size_t n = ft_iobuf_size(b);
    char *flat = malloc(n ? n : 1);
    if (!flat) return FTRPC_ENOMEM;
    ft_iobuf_copy_at(b, 0, flat, n);
    ft_strbuf sb;
    ft_strbuf_init(&sb, 0);
    int rc = ft_pb_bytes_to_json(desc, flat, n, &sb, err, errlen);
    free(flat);
    if (rc == 0) {
        *json = sb.data ? sb.data : strdup("");
        if (!*json) rc = FTRPC_ENOMEM;
        return rc;
    }
    ft_strbuf_fini(&sb);
    return rc;
}
