/*
 * TLS over green sockets (OpenSSL 3): blocking-style handshake, read, write and shutdown that
 * suspend only the calling green thread.
 *
 * The ciphertext moves through ivy's own ring calls: each connection's OpenSSL BIO takes bytes
 * from the socket's multishot receive (as ivy_recv does) and its records leave with ivy_send,
 * so OpenSSL never touches the socket and every call inherits ivy's interruptions: -ECANCELED
 * when the thread is killed, -ETIMEDOUT when an enclosing ivy_timeout scope expires. Waits
 * happen only between OpenSSL calls, never inside one, so an interrupted call (the handshake
 * too) leaves the connection whole and a later call resumes it, and one green thread may read
 * while another writes. Outgoing records are gathered and go out in one send per handshake
 * flight or per ivy_tls_write. The socket is received on: close it with ivy_tls_close.
 *
 * Errors are negative errno values, as in socket.h. The socket's own errors pass through
 * (-ECONNRESET, -EPIPE, ...); a failure of TLS itself (a malformed record, a handshake failure,
 * an alert from the peer, a certificate that does not verify) is -EPROTO, and
 * ivy_tls_error(conn) names the cause in OpenSSL's words ("certificate verify failed:
 * certificate has expired"). A peer that closes in the middle of the handshake is -ECONNRESET.
 *
 * kTLS: where the kernel has the "tls" TCP ULP, contexts set SSL_OP_ENABLE_KTLS and the BIO
 * accepts the transmit keys, so after the handshake records are encrypted by the kernel on send;
 * ivy_tls_path() says which path is in force. Receives always decrypt in userspace: the ring's
 * multishot receive carries no record-type control messages.
 */
#ifndef IVY_TLS_H
#define IVY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "ivy/socket.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ivy_tls_ctx ivy_tls_ctx;
typedef struct ivy_tls ivy_tls;

enum {
    IVY_TLS_INSECURE = 1 << 0,  /* client: accept any certificate, any name (ivy load --insecure) */
    IVY_TLS_NO_RESUME = 1 << 1, /* client: never offer a session: every handshake is a full one */
};

/*
 * A server context from a PEM certificate chain (leaf first) and its private key: TLS 1.2 and
 * 1.3, ALPN http/1.1 (chosen when the client offers it), session tickets and a server-side
 * session cache, so returning clients resume without a full handshake. Contexts created
 * before fork share their ticket keys with the children, so a ticket issued by one worker
 * resumes on another. Returns 0 and *out, or a negative errno with a one-line cause in msg
 * (msg may be NULL): -ENOENT or -EACCES (a file missing or unreadable, named), -EINVAL (not
 * a PEM certificate or key, or the key does not match the certificate), -ENOMEM.
 */
int ivy_tls_server_new(ivy_tls_ctx **out, const char *cert_file, const char *key_file, char *msg,
                       size_t msglen);

/*
 * A client context: verification on by default, against ca_file (PEM; NULL: the system's
 * trust store), ALPN http/1.1 offered. It remembers the last session each connection was
 * given and offers it on the next connection to the same server name (resumption on
 * reconnect). Errors as ivy_tls_server_new.
 */
int ivy_tls_client_new(ivy_tls_ctx **out, const char *ca_file, int flags, char *msg, size_t msglen);

/*
 * Re-reads a server context's certificate and key (for SIGHUP): connections made afterwards
 * get the new ones, those already open keep theirs. On failure the context is unchanged and
 * the error is as ivy_tls_server_new's. -EINVAL on a client context.
 */
int ivy_tls_ctx_reload(ivy_tls_ctx *ctx, char *msg, size_t msglen);

/* Frees the context; connections made from it stay valid until they are freed. */
void ivy_tls_ctx_free(ivy_tls_ctx *ctx);

/*
 * A TLS connection over connected socket fd (which it does not own until ivy_tls_close).
 * server_name (client contexts): sent as SNI unless it is an IP literal, and the name (or
 * address) the certificate must carry unless IVY_TLS_INSECURE; NULL skips both checks only
 * with IVY_TLS_INSECURE (-EINVAL otherwise). NULL + errno.
 */
ivy_tls *ivy_tls_new(ivy_tls_ctx *ctx, int fd, const char *server_name);

/*
 * Runs the handshake to its end: 0, or a negative errno; after -ETIMEDOUT or -ECANCELED it may
 * be called again, after any other error the connection is unusable (close it). ivy_tls_read
 * and ivy_tls_write run it implicitly when it has not been done.
 */
int ivy_tls_handshake(ivy_tls *c);

/*
 * Decrypted bytes, up to len; 0 once the peer has closed (close_notify, or a bare TCP close
 * after the handshake, as browsers and load generators do). -ETIMEDOUT or -ECANCELED before
 * any byte arrived leaves the connection usable: a later read resumes where this one was.
 */
ssize_t ivy_tls_read(ivy_tls *c, void *buf, size_t len);

/* Encrypts and sends all of buf (in records of up to 16 KiB); len or a negative errno
   (-EPIPE once the peer's close_notify has arrived). */
ssize_t ivy_tls_write(ivy_tls *c, const void *buf, size_t len);

/* Sends close_notify (does not wait for the peer's): 0 or a negative errno. */
int ivy_tls_shutdown(ivy_tls *c);

/* Frees the connection and ivy_close()s its socket (no close_notify: shut down first). */
int ivy_tls_close(ivy_tls *c);
/* Frees the connection, leaving the socket open. */
void ivy_tls_free(ivy_tls *c);

/*
 * Serves a plaintext TCP connection function over c (a server connection, handshake not yet
 * run): after the handshake, fn(fd, arg) runs in the calling thread with fd one end of a local
 * socketpair whose other end two green threads pump to and from c, so an app written for
 * plain sockets serves TLS unchanged. The client's close is fn's end of stream; fn's return
 * sends close_notify. fn must not close fd. Returns 0 once fn returned and the pumps ended
 * (c stays open: ivy_tls_close it), or the handshake's error without calling fn.
 */
int ivy_tls_run_plain(ivy_tls *c, ivy_conn_fn fn, void *arg);

/*
 * ivy_tcp_serve over TLS: each connection's handshake (within 60 s, nginx's
 * client_header_timeout), then fn through ivy_tls_run_plain, registered for draining as
 * ivy_tcp_serve's are. Returns as ivy_tcp_serve does.
 */
int ivy_tls_tcp_serve(int listen_fd, ivy_tls_ctx *ctx, ivy_conn_fn fn, void *arg);

/* Why the last call on c failed ("" if none did): OpenSSL's reason, or the socket error's. */
const char *ivy_tls_error(const ivy_tls *c);
/* The protocol ALPN agreed on ("http/1.1"), or "" when none was. */
const char *ivy_tls_alpn(const ivy_tls *c);
/* Whether the handshake resumed a session instead of a full key exchange. */
bool ivy_tls_resumed(const ivy_tls *c);
/* "TLSv1.3", "TLSv1.2". */
const char *ivy_tls_version(const ivy_tls *c);

/*
 * The record path in force for this process, one line: "kTLS transmit (kernel tls ULP)" or
 * "userspace (kernel without the tls ULP: CONFIG_TLS)". Decided once, on first use.
 */
const char *ivy_tls_path(void);

#ifdef __cplusplus
}
#endif
#endif
