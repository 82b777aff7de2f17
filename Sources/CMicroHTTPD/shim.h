#ifndef HOMEPORT_CMICROHTTPD_SHIM_H
#define HOMEPORT_CMICROHTTPD_SHIM_H

#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <microhttpd.h>

/* MHD_start_daemon is variadic, which Swift cannot call. This wrapper takes
 * the options as an MHD_OPTION_END-terminated array and passes them through
 * MHD_OPTION_ARRAY, so every option stays available from Swift. */
static inline struct MHD_Daemon *
homeport_mhd_start_daemon(unsigned int flags,
                          uint16_t port,
                          MHD_AccessHandlerCallback handler,
                          void *handler_context,
                          const struct MHD_OptionItem *options)
{
    return MHD_start_daemon(flags, port, NULL, NULL, handler, handler_context,
                            MHD_OPTION_ARRAY, options,
                            MHD_OPTION_END);
}

/* MHD_get_daemon_info is variadic too; this returns the bound port, which is
 * what a listener started on port 0 needs to report. 0 when unknown. */
static inline uint16_t
homeport_mhd_bound_port(struct MHD_Daemon *daemon)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info == NULL ? 0 : info->port;
}

#endif
