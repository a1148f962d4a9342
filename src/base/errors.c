/* Names and descriptions of the FTRPC_E* codes; one table so that the two never drift apart. */
#include "ftrpc/common.h"

struct err_entry {
    int code;
    const char *name;
    const char *text;
};

static const struct err_entry ERRORS[] = {
    {FTRPC_OK, "FTRPC_OK", "success"},
    {FTRPC_EINVAL, "FTRPC_EINVAL", "invalid argument"},
    {FTRPC_ENOMEM, "FTRPC_ENOMEM", "out of memory"},
    {FTRPC_EIOTHREAD, "FTRPC_EIOTHREAD", "blocking call made on an IO thread"},
    {FTRPC_ESTOPPED, "FTRPC_ESTOPPED", "stopped"},
    {FTRPC_EADDR, "FTRPC_EADDR", "bad address"},
    {FTRPC_ECONNREFUSED, "FTRPC_ECONNREFUSED", "connection refused"},
    {FTRPC_ENOENDPOINT, "FTRPC_ENOENDPOINT", "no endpoint available"},
    {FTRPC_ECANCELED, "FTRPC_ECANCELED", "cancelled"},
    {FTRPC_ESYS, "FTRPC_ESYS", "system call failed"},
    {FTRPC_ECONNECT, "FTRPC_ECONNECT", "connect failed"},
    {FTRPC_EEXIST, "FTRPC_EEXIST", "already exists"},
    {FTRPC_ETLS, "FTRPC_ETLS", "TLS failure"},
    {FTRPC_EBUSINESS, "FTRPC_EBUSINESS", "business error"},
    {FTRPC_EADDRINUSE, "FTRPC_EADDRINUSE", "address already in use"},
    {FTRPC_EBREAKER, "FTRPC_EBREAKER", "circuit breaker open"},
    {FTRPC_ETHROTTLED, "FTRPC_ETHROTTLED", "throttled by the client: the service is overloaded"},
    {FTRPC_ENOSERVICE, "FTRPC_ENOSERVICE", "no such service"},
    {FTRPC_ENOMETHOD, "FTRPC_ENOMETHOD", "no such method"},
    {FTRPC_EREQUEST, "FTRPC_EREQUEST", "bad request"},
    {FTRPC_ERPCAUTH, "FTRPC_ERPCAUTH", "authentication failed"},
    {FTRPC_EBACKUPREQUEST, "FTRPC_EBACKUPREQUEST", "backup request timer fired"},
    {FTRPC_ERPCTIMEDOUT, "FTRPC_ERPCTIMEDOUT", "deadline exceeded"},
    {FTRPC_EFAILEDSOCKET, "FTRPC_EFAILEDSOCKET", "connection broken"},
    {FTRPC_EOVERCROWDED, "FTRPC_EOVERCROWDED", "too much unwritten data on the connection"},
    {FTRPC_EEOF, "FTRPC_EEOF", "peer closed the connection"},
    {FTRPC_EINTERNAL, "FTRPC_EINTERNAL", "internal server error"},
    {FTRPC_ERESPONSE, "FTRPC_ERESPONSE", "bad response"},
    {FTRPC_ELOGOFF, "FTRPC_ELOGOFF", "server is stopping"},
    {FTRPC_ELIMIT, "FTRPC_ELIMIT", "server concurrency limit reached"},
};

static const struct err_entry *find(int code)
{
    for (size_t i = 0; i < sizeof(ERRORS) / sizeof(ERRORS[0]); i++)
        if (ERRORS[i].code == code) return &ERRORS[i];
    return NULL;
}

const char *ftrpc_strerror(int code)
{
    const struct err_entry *e = find(code);
    return e ? e->text : "unknown error";
}

const char *ftrpc_err_name(int code)
{
    const struct err_entry *e = find(code);
    return e ? e->name : "FTRPC_EUNKNOWN";
}
