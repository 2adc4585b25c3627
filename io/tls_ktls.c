/*
 * kTLS transmit for the ring BIO: where the kernel has the "tls" ULP, OpenSSL (with
 * SSL_OP_ENABLE_KTLS) hands the BIO its transmit keys once the handshake's application keys
 * are set; from then on records leave as plaintext and the kernel encrypts them, so a
 * response is one plain ring send (and a sendfile could splice). Receives stay in userspace:
 * the kernel's decrypted records carry their type in a control message, which the socket's
 * multishot receive cannot deliver.
 *
 * The keys arrive as OpenSSL's kernel crypto-info blob (struct tls12_crypto_info_* inside a
 * union): its length is taken from the cipher type in its leading struct tls_crypto_info, so
 * nothing depends on the union's layout. Records other than application data (alerts,
 * tickets, key updates) need their type in a TLS_SET_RECORD_TYPE control message, sent by
 * ivy__ktls_send_record with one sendmsg through the ring.
 *
 * IVY_TLS_KTLS=0 in the environment keeps records in userspace on such kernels too.
 */
#include "socket_impl.h"
#include "tls_ktls.h"

#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

bool ivy__ktls_wanted(void)
{
    const char *e = getenv("IVY_TLS_KTLS");
    return !(e && !strcmp(e, "0"));
}

static size_t info_len(const struct tls_crypto_info *i)
{
    switch (i->cipher_type) {
#ifdef TLS_CIPHER_AES_GCM_128
    case TLS_CIPHER_AES_GCM_128:
        return sizeof(struct tls12_crypto_info_aes_gcm_128);
#endif
#ifdef TLS_CIPHER_AES_GCM_256
    case TLS_CIPHER_AES_GCM_256:
        return sizeof(struct tls12_crypto_info_aes_gcm_256);
#endif
#ifdef TLS_CIPHER_AES_CCM_128
    case TLS_CIPHER_AES_CCM_128:
        return sizeof(struct tls12_crypto_info_aes_ccm_128);
#endif
#ifdef TLS_CIPHER_CHACHA20_POLY1305
    case TLS_CIPHER_CHACHA20_POLY1305:
        return sizeof(struct tls12_crypto_info_chacha20_poly1305);
#endif
    default:
        return 0;
    }
}

int ivy__ktls_tx_start(int fd, const void *crypto_info)
{
    const struct tls_crypto_info *i = crypto_info;
    size_t len = i ? info_len(i) : 0;
    if (!len) return -EOPNOTSUPP;
    /* The ULP may already be there (a second key, after a KeyUpdate): EEXIST is fine. */
    if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", 3) < 0 && errno != EEXIST) return -errno;
    if (setsockopt(fd, SOL_TLS, TLS_TX, crypto_info, (socklen_t)len) < 0) return -errno;
    return 0;
}

ssize_t ivy__ktls_send_record(int fd, int type, const void *buf, size_t len)
{
    union {
        char buf[CMSG_SPACE(sizeof(unsigned char))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_TLS;
    cm->cmsg_type = TLS_SET_RECORD_TYPE;
    cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
    *CMSG_DATA(cm) = (unsigned char)type;
    struct ivy__call k;
    int rc = ivy__op_begin(&k);
    if (rc < 0) return rc;
    io_uring_prep_sendmsg(k.sqe, fd, &msg, MSG_NOSIGNAL);
    return ivy__op_end(&k);
}
