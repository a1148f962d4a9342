/* The library's version (ftrpc/common.h, "Versions"). */
#include "ftrpc/common.h"

#define FT_STR2(x) #x
#define FT_STR(x) FT_STR2(x)

unsigned ftrpc_version(void)
{
    return FTRPC_VERSION_HEX;
}

const char *ftrpc_version_string(void)
{
    return FT_STR(FTRPC_VERSION_MAJOR) "." FT_STR(FTRPC_VERSION_MINOR) "." FT_STR(
        FTRPC_VERSION_PATCH);
}
