// The OpenSSL implementation of transport::ChannelSecurity: one SSL_CTX per role, built from
// the --tls-* settings, and the handshake that yields a TlsStream.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "openssl_util.h"
#include "ramshift/security/tls_settings.h"
#include "ramshift/transport/channel_security.h"

namespace ramshift::security {

class TlsChannel final : public transport::ChannelSecurity {
 public:
  static Result<std::shared_ptr<TlsChannel>> create(const TlsSettings& settings,
                                                    transport::PeerRole role);

  Result<std::unique_ptr<transport::SecureStream>> handshake(
      int fd, transport::PeerRole role, const std::string& host,
      std::chrono::steady_clock::time_point deadline) override;
  // Over a message pipe (rdma): memory BIOs instead of a socket; tls_session.cc.
  Result<std::unique_ptr<transport::SecureSession>> handshake(
      transport::MessagePipe& pipe, transport::PeerRole role, const std::string& host,
      std::chrono::steady_clock::time_point deadline) override;
  Status authorize(const transport::SecureStream& stream) const override;
  Status authorize(const transport::SecureSession& session) const override;
  std::string mode() const override { return psk_.empty() ? "x509" : "psk"; }

  // The PSK entries (empty for X.509); the session callbacks read them.
  const std::vector<PskEntry>& psk() const { return psk_; }

 private:
  TlsChannel() = default;
  Status load_x509(const TlsSettings& settings);
  Status load_psk_file(const TlsSettings& settings);
  std::string handshake_failure(SSL* ssl, int ssl_error, const std::string& host) const;
  // A session for `role` with no transport attached yet: the client's check of `host`, and
  // `identity` (which must outlive the handshake) filled in by the PSK callbacks.
  Result<SslPtr> start_session(transport::PeerRole role, const std::string& host,
                               std::string* identity) const;
  // After a handshake: the peer's certificate subject, or the PSK identity noted already.
  std::string proven_identity(SSL* ssl, std::string psk_identity) const;
  Status authorize_identity(const std::string& identity) const;

  SslCtxPtr ctx_;
  transport::PeerRole role_ = transport::PeerRole::kClient;
  std::vector<PskEntry> psk_;
  std::vector<std::string> allowed_;  // --tls-authz; empty: any authenticated peer
  std::string source_;                // "--tls-dir /etc/pki/qemu" or "--tls-psk keys.psk"
};

}  // namespace ramshift::security
