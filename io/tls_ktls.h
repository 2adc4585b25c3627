/* kTLS transmit (io/tls_ktls.c), for the ring BIO of io/tls_conn.c. */
#ifndef IVY_TLS_KTLS_H
#define IVY_TLS_KTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * OpenSSL's BIO controls for kTLS. Its public bio.h keeps them out of reach (they are
 * "internal"), but custom BIOs must answer them to take part, so here they are, by value
 * (OpenSSL 3.0, include/openssl/bio.h.in).
 */
#define IVY__BIO_CTRL_SET_KTLS                  72
#define IVY__BIO_CTRL_SET_KTLS_TX_SEND_CTRL_MSG 74
#define IVY__BIO_CTRL_CLEAR_KTLS_TX_CTRL_MSG    75

/* false when IVY_TLS_KTLS=0 asks to keep every record in userspace. */
bool ivy__ktls_wanted(void);
/* Attaches the tls ULP to fd and gives it OpenSSL's transmit crypto info: 0 or -errno. */
int ivy__ktls_tx_start(int fd, const void *crypto_info);
/* Sends one record of the given TLS content type (not application data) through the kernel. */
ssize_t ivy__ktls_send_record(int fd, int type, const void *buf, size_t len);

#endif
