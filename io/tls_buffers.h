/*
 * For servers that know when their TLS connections go quiet (http/, which parks them): OpenSSL's
 * record buffers (about 34 KiB a connection) kept while a connection is busy, rather than freed
 * and allocated again around every record as SSL_MODE_RELEASE_BUFFERS does for every other
 * connection, and given back once it is quiet.
 */
#ifndef IVY_IO_TLS_BUFFERS_H
#define IVY_IO_TLS_BUFFERS_H

#include "ivy/tls.h"

void ivy__tls_keep_buffers(ivy_tls *c); /* for the connection's life */
void ivy__tls_drop_buffers(ivy_tls *c); /* frees them now (if empty): the connection is quiet */

#endif
