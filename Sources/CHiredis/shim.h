#ifndef HOMEPORT_CHIREDIS_SHIM_H
#define HOMEPORT_CHIREDIS_SHIM_H

// hiredis 0.14 (Debian libhiredis-dev) installs its headers under
// /usr/include/hiredis. The module map links the library by name instead of
// through pkg-config, whose Cflags add a define that SwiftPM warns about.
#include <hiredis/hiredis.h>

#endif
