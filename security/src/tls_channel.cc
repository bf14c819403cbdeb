#include "tls_channel.h"

#include <fmt/format.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "ramshift/base/log.h"
#include "tls_stream.h"

namespace ramshift::security {
namespace {

using transport::PeerRole;
using Clock = std::chrono::steady_clock;

// Why 128 KiB: with read-ahead OpenSSL fills this buffer per recv(), several 16 KiB records
// at a time, instead of two recv() calls (header, body) per record.
constexpr size_t kReadBufferBytes = 128u << 10;
// AES-256-GCM first: the cipher the issue names for guest memory; all three are in every
// TLS 1.3 stack and in the kernel's TLS offload.
constexpr const char* kCipherSuites =
    "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";

TlsChannel* channel_of(SSL* ssl) {
  return static_cast<TlsChannel*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
}
void note_identity(SSL* ssl, const std::string& identity) {
  if (auto* out = static_cast<std::string*>(SSL_get_app_data(ssl))) *out = identity;
}

// A TLS 1.3 external PSK is a session whose "master key" is the key, bound to a cipher suite
// whose hash matches on both sides: TLS_AES_256_GCM_SHA384.
SSL_SESSION* psk_session(SSL* ssl, const PskEntry& entry) {
  const unsigned char suite[] = {0x13, 0x02};
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, suite);
  SessionPtr s(SSL_SESSION_new());
  if (!s || !cipher || !SSL_SESSION_set1_master_key(s.get(), entry.key.data(), entry.key.size()) ||
      !SSL_SESSION_set_cipher(s.get(), cipher) ||
      !SSL_SESSION_set_protocol_version(s.get(), TLS1_3_VERSION))
    return nullptr;
  return s.release();
}

int use_psk(SSL* ssl, const EVP_MD* md, const unsigned char** id, size_t* id_len,
            SSL_SESSION** session) {
  const PskEntry& entry = channel_of(ssl)->psk().front();
  SessionPtr s(psk_session(ssl, entry));
  if (!s) return 0;
  *session = nullptr;
  if (md != nullptr && md != SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(s.get())))
    return 1;  // a retried hello with another hash: offer no key rather than a wrong one
  *id = reinterpret_cast<const unsigned char*>(entry.identity.data());
  *id_len = entry.identity.size();
  *session = s.release();
  note_identity(ssl, entry.identity);
  return 1;
}

int find_psk(SSL* ssl, const unsigned char* id, size_t id_len, SSL_SESSION** session) {
  std::string_view wanted(reinterpret_cast<const char*>(id), id_len);
  *session = nullptr;
  for (const PskEntry& e : channel_of(ssl)->psk()) {
    if (e.identity != wanted) continue;
    *session = psk_session(ssl, e);
    note_identity(ssl, e.identity);
    return *session ? 1 : 0;
  }
  log::warn("TLS: a peer offered the PSK identity '{}', which --tls-psk does not hold", wanted);
  return 1;
}

void warn_if_expired(const std::string& path) {
  auto certs = read_certificates(path);
  if (!certs) return;
  X509* leaf = certs->front().get();
  if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
    log::warn("TLS: {} expired on {}; the peer will refuse it (renew it: ramshift doctor)", path,
              not_after_of(leaf));
  else if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0)
    log::warn("TLS: {} is not valid yet; the peer will refuse it (check the clock)", path);
}

}  // namespace

Result<std::shared_ptr<TlsChannel>> TlsChannel::create(const TlsSettings& settings, PeerRole role) {
  std::shared_ptr<TlsChannel> ch(new TlsChannel());
  ch->role_ = role;
  ERR_clear_error();
  ch->ctx_.reset(
      SSL_CTX_new(role == PeerRole::kClient ? TLS_client_method() : TLS_server_method()));
  if (!ch->ctx_)
    return Status(ErrorCode::kInternal,
                  fmt::format("TLS: cannot create a context: {}", take_openssl_errors()));
  SSL_CTX* ctx = ch->ctx_.get();
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | (settings.ktls ? SSL_OP_ENABLE_KTLS : 0));
  // No session tickets: nothing to resume (every connection authenticates in full), and no
  // record after the handshake that the kernel's TLS receive path would have to hand back.
  SSL_CTX_set_num_tickets(ctx, 0);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, kReadBufferBytes);
  if (SSL_CTX_set_ciphersuites(ctx, kCipherSuites) != 1)
    return Status(ErrorCode::kInternal, "TLS: this OpenSSL lacks the TLS 1.3 cipher suites");
  SSL_CTX_set_app_data(ctx, ch.get());
  if (!settings.dir.empty())
    RS_RETURN_IF_ERROR(ch->load_x509(settings));
  else
    RS_RETURN_IF_ERROR(ch->load_psk_file(settings));
  RS_ASSIGN_OR_RETURN(ch->allowed_, load_authz(settings.authz));
  return ch;
}

Status TlsChannel::load_x509(const TlsSettings& t) {
  source_ = "--tls-dir " + t.dir;
  SSL_CTX* ctx = ctx_.get();
  const std::string ca = t.file("ca-cert.pem");
  if (!file_exists(ca))
    return Status(ErrorCode::kNotFound,
                  fmt::format("--tls-dir {}: no ca-cert.pem (the CA both sides trust; the layout "
                              "is QEMU's: see docs/security.md)",
                              t.dir));
  if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("{}: not a PEM CA certificate ({})", ca, take_openssl_errors()));
  const bool server = role_ == transport::PeerRole::kServer;
  const std::string cert = t.file(server ? "server-cert.pem" : "client-cert.pem");
  const std::string key = t.file(server ? "server-key.pem" : "client-key.pem");
  if (!file_exists(cert)) {
    if (server)
      return Status(ErrorCode::kNotFound,
                    fmt::format("--tls-dir {}: no server-cert.pem, which the accepting side "
                                "needs (with server-key.pem)",
                                t.dir));
    log::warn(
        "TLS: {} has no client-cert.pem: connecting without a certificate, which a "
        "receiver refuses",
        t.dir);
  } else {
    if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1)
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{}: not a PEM certificate ({})", cert, take_openssl_errors()));
    if (!file_exists(key))
      return Status(ErrorCode::kNotFound, fmt::format("{} has no private key beside it: {} is "
                                                      "missing",
                                                      cert, key));
    // OpenSSL refuses a key that is not the certificate's already here ("key values
    // mismatch"); the check below says so in the user's words.
    if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
      std::string why = take_openssl_errors();
      if (why.find("mismatch") == std::string::npos)
        return Status(ErrorCode::kInvalidArgument,
                      fmt::format("{}: not a readable PEM private key ({})", key, why));
    }
    if (SSL_CTX_check_private_key(ctx) != 1)
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{} does not belong to {} (the key does not match the "
                                "certificate)",
                                key, cert));
    warn_if_expired(cert);
  }
  SSL_CTX_set_verify(
      ctx, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER, nullptr);
  return Status::ok();
}

Status TlsChannel::load_psk_file(const TlsSettings& t) {
  source_ = "--tls-psk " + t.psk_file;
  RS_ASSIGN_OR_RETURN(psk_, load_psk(t.psk_file));
  if (role_ == transport::PeerRole::kClient)
    SSL_CTX_set_psk_use_session_callback(ctx_.get(), use_psk);
  else
    SSL_CTX_set_psk_find_session_callback(ctx_.get(), find_psk);
  return Status::ok();
}

Result<SslPtr> TlsChannel::start_session(PeerRole role, const std::string& host,
                                         std::string* identity) const {
  ERR_clear_error();
  SslPtr ssl(SSL_new(ctx_.get()));
  if (!ssl)
    return Status(ErrorCode::kInternal,
                  fmt::format("TLS: cannot start a session: {}", take_openssl_errors()));
  SSL_set_app_data(ssl.get(), identity);
  if (role == PeerRole::kClient) {
    if (psk_.empty()) {
      // The receiver's certificate must name the host this side dialled (a SAN IP or DNS name).
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl.get());
      if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
        SSL_set1_host(ssl.get(), host.c_str());
        SSL_set_tlsext_host_name(ssl.get(), host.c_str());
      }
    }
    SSL_set_connect_state(ssl.get());
  } else {
    SSL_set_accept_state(ssl.get());
  }
  return ssl;
}

std::string TlsChannel::proven_identity(SSL* ssl, std::string psk_identity) const {
  SSL_set_app_data(ssl, nullptr);
  if (!psk_.empty()) return psk_identity;
  X509* peer = SSL_get0_peer_certificate(ssl);
  return peer ? subject_of(peer) : "";
}

Result<std::unique_ptr<transport::SecureStream>> TlsChannel::handshake(int fd, PeerRole role,
                                                                       const std::string& host,
                                                                       Clock::time_point deadline) {
  std::string identity;
  RS_ASSIGN_OR_RETURN(SslPtr ssl, start_session(role, host, &identity));
  if (SSL_set_fd(ssl.get(), fd) != 1)
    return Status(ErrorCode::kInternal,
                  fmt::format("TLS: cannot start a session: {}", take_openssl_errors()));
  SigpipeGuard no_sigpipe;
  for (;;) {
    ERR_clear_error();
    int r = SSL_do_handshake(ssl.get());
    if (r == 1) break;
    int err = SSL_get_error(ssl.get(), r);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
      return Status(ErrorCode::kMismatch, handshake_failure(ssl.get(), err, host));
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{fd, static_cast<short>(err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT), 0};
    int n = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
    if (n == 0)
      return Status(ErrorCode::kTimeout, fmt::format("TLS handshake{} did not finish in time",
                                                     host.empty() ? "" : " with " + host));
    if (n < 0 && errno != EINTR) return errno_status(ErrorCode::kIo, "poll", errno);
  }
  identity = proven_identity(ssl.get(), identity);
  return std::unique_ptr<transport::SecureStream>(
      std::make_unique<TlsStream>(std::move(ssl), identity, mode()));
}

std::string TlsChannel::handshake_failure(SSL* ssl, int ssl_error, const std::string& host) const {
  const bool client = role_ == PeerRole::kClient;
  std::string why = take_openssl_errors();
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK)
    why = fmt::format("the peer's {} was refused: {}", client ? "server-cert.pem" : "certificate",
                      X509_verify_cert_error_string(verify));
  if (why.empty() && ssl_error == SSL_ERROR_SYSCALL)
    why = errno != 0 ? fmt::format("{}", std::strerror(errno))
                     : "the peer closed the connection during the handshake";
  if (why.empty()) why = "unknown error";
  std::string hint;
  if (client)
    hint = psk_.empty() ? "; check both sides' --tls-dir (`ramshift doctor --tls-dir DIR`) and "
                          "that the peer listens with TLS (its log says why it refused)"
                        : "; do both sides' --tls-psk files hold the same identity and key? "
                          "(the peer's log says why it refused)";
  else if (!psk_.empty())
    hint = " (do both sides' --tls-psk files hold the same key?)";
  return fmt::format("TLS handshake{} failed ({}): {}{}", host.empty() ? "" : " with " + host,
                     source_, why, hint);
}

Status TlsChannel::authorize(const transport::SecureStream& stream) const {
  return authorize_identity(stream.peer_identity());
}

Status TlsChannel::authorize(const transport::SecureSession& session) const {
  return authorize_identity(session.peer_identity());
}

Status TlsChannel::authorize_identity(const std::string& id) const {
  if (allowed_.empty()) return Status::ok();
  if (std::find(allowed_.begin(), allowed_.end(), id) != allowed_.end()) return Status::ok();
  return Status(ErrorCode::kMismatch,
                fmt::format("{} '{}' is not in this side's --tls-authz list",
                            psk_.empty() ? "the certificate" : "the PSK identity", id));
}

}  // namespace ramshift::security
