/* SPDX-License-Identifier: MIT */
/* TLS for the shim, on OpenSSL 3.0: one client SSL_CTX built at start-up (TLS >= 1.2), and
 * per connection an SSL with SNI and the relay's host name or IP address to check. Two
 * ways to trust the relay: the certificate chain (system store or --ca) with the host name
 * check, or public key pins (curl's sha256//BASE64 of the DER SubjectPublicKeyInfo), in
 * which case the chain is not verified at all and the pin is the whole check, so a
 * self-signed gateway works. --insecure verifies nothing and main.c says so loudly. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "shim.h"

int tls_ctx_open(SSL_CTX **out, const char *ca_file, unsigned npins, bool insecure,
		 char err[static SHIM_ERR_LEN])
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	bool verify = !insecure && npins == 0;

	*out = NULL;
	if (!ctx) {
		snprintf(err, SHIM_ERR_LEN, "SSL_CTX_new failed");
		return -ENOMEM;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		snprintf(err, SHIM_ERR_LEN, "cannot require TLS 1.2");
		goto out_free;
	}
	/* no SSL_MODE_RELEASE_BUFFERS: it would allocate per packet */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	/* One read(2) per burst of TLS records instead of two per record (header, body); what
	 * OpenSSL holds ahead is seen by SSL_has_pending() (session_read). */
	SSL_CTX_set_read_ahead(ctx, 1);
	if (ca_file && ca_file[0]) {
		FILE *f = fopen(ca_file, "re");

		if (!f) {
			snprintf(err, SHIM_ERR_LEN, "--ca '%s': %s", ca_file, strerror(errno));
			goto out_free;
		}
		fclose(f);
		if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
			unsigned long e = ERR_peek_last_error();

			snprintf(err, SHIM_ERR_LEN, "--ca '%s': cannot load: %s", ca_file,
				 e ? ERR_reason_error_string(e) : "unknown error");
			goto out_free;
		}
	} else if (verify && SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, SHIM_ERR_LEN, "cannot load the system CA store");
		goto out_free;
	}
	SSL_CTX_set_verify(ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	ERR_clear_error();
	*out = ctx;
	return 0;
out_free:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return -EINVAL;
}

SSL *tls_new(SSL_CTX *ctx, int fd, const struct shim_url *u, bool verify)
{
	SSL *ssl = SSL_new(ctx);

	if (!ssl)
		return NULL;
	if (SSL_set_fd(ssl, fd) != 1)
		goto out_free;
	if (!u->host_is_ip && SSL_set_tlsext_host_name(ssl, u->host) != 1)
		goto out_free;
	if (verify) {
		X509_VERIFY_PARAM *param = SSL_get0_param(ssl);

		if (u->host_is_ip) {
			if (X509_VERIFY_PARAM_set1_ip_asc(param, u->host) != 1)
				goto out_free;
		} else {
			X509_VERIFY_PARAM_set_hostflags(param,
							X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
			if (X509_VERIFY_PARAM_set1_host(param, u->host, 0) != 1)
				goto out_free;
		}
	}
	SSL_set_connect_state(ssl);
	return ssl;
out_free:
	SSL_free(ssl);
	return NULL;
}

int tls_spki_sha256(X509 *cert, uint8_t out[static SHIM_PIN_LEN])
{
	unsigned char *der = NULL;
	unsigned int mdlen = 0;
	int n, ret = -EINVAL;

	n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
	if (n <= 0)
		return -EINVAL;
	if (EVP_Digest(der, (size_t)n, out, &mdlen, EVP_sha256(), NULL) == 1 &&
	    mdlen == SHIM_PIN_LEN)
		ret = 0;
	OPENSSL_free(der);
	return ret;
}

int tls_check_pin(SSL *ssl, const uint8_t (*pins)[SHIM_PIN_LEN], unsigned npins,
		  char have[static SHIM_PIN_B64_LEN + 1])
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	uint8_t md[SHIM_PIN_LEN];

	have[0] = '\0';
	if (!cert || tls_spki_sha256(cert, md) < 0)
		return -ENOENT;
	for (unsigned i = 0; i < npins; i++)
		if (CRYPTO_memcmp(md, pins[i], SHIM_PIN_LEN) == 0)
			return 0;
	EVP_EncodeBlock((unsigned char *)have, md, SHIM_PIN_LEN);
	return -EPERM;
}

/* The common name of n, else the whole name on one line; printable ASCII only. */
static void name_str(const X509_NAME *n, char *buf, size_t len)
{
	int i = n ? X509_NAME_get_index_by_NID(n, NID_commonName, -1) : -1;
	const ASN1_STRING *v = i >= 0 ? X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i)) : NULL;

	buf[0] = '\0';
	if (v)
		snprintf(buf, len, "%.*s", ASN1_STRING_length(v),
			 (const char *)ASN1_STRING_get0_data(v));
	else if (n)
		X509_NAME_oneline(n, buf, (int)len);
	for (char *c = buf; *c; c++)
		if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f || *c == '\'')
			*c = '?';
}

int tls_peer_describe(SSL *ssl, struct tls_peer *out)
{
	X509 *cert = SSL_get0_peer_certificate(ssl);
	STACK_OF(X509) *chain;
	uint8_t md[SHIM_PIN_LEN];

	memset(out, 0, sizeof(*out));
	/* a handshake that failed its verification may have kept only the chain */
	if (!cert && (chain = SSL_get_peer_cert_chain(ssl)) && sk_X509_num(chain) > 0)
		cert = sk_X509_value(chain, 0);
	if (!cert)
		return -ENOENT;
	name_str(X509_get_subject_name(cert), out->subject, sizeof(out->subject));
	name_str(X509_get_issuer_name(cert), out->issuer, sizeof(out->issuer));
	out->self_issued = X509_NAME_cmp(X509_get_subject_name(cert),
					 X509_get_issuer_name(cert)) == 0;
	if (tls_spki_sha256(cert, md) == 0)
		EVP_EncodeBlock((unsigned char *)out->pin, md, SHIM_PIN_LEN);
	return 0;
}
