/* The runtime's version: the library's own, whatever headers a program was compiled with. */
#include "ivy/version.h"

unsigned ivy_version(void)
{
    return IVY_VERSION;
}

const char *ivy_version_string(void)
{
    return IVY_VERSION_STRING;
}
