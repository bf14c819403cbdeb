// Installs the OpenSSL channel as the transport's SecurityProvider when this library is
// linked (whole: nothing refers to the registrar; see CMakeLists.txt).
#include <fmt/format.h>

#include "openssl_util.h"
#include "ramshift/security/tls_settings.h"
#include "ramshift/transport/channel_security.h"
#include "tls_channel.h"

namespace ramshift::security {
namespace {

Result<std::shared_ptr<transport::ChannelSecurity>> make(const transport::BackendSettings& s,
                                                         transport::PeerRole role) {
  RS_ASSIGN_OR_RETURN(TlsSettings t, TlsSettings::from(s));
  RS_ASSIGN_OR_RETURN(auto channel, TlsChannel::create(t, role));
  return std::shared_ptr<transport::ChannelSecurity>(std::move(channel));
}

// What a command can check before it knows its role: the folder or key file is there and
// parses, the allow-list loads. The role's own files are checked when it listens or connects.
Status check(const transport::BackendSettings& s) {
  RS_ASSIGN_OR_RETURN(TlsSettings t, TlsSettings::from(s));
  if (!t.dir.empty() && !file_exists(t.file("ca-cert.pem")))
    return Status(ErrorCode::kNotFound,
                  fmt::format("--tls-dir {}: no ca-cert.pem there (expected QEMU's layout: "
                              "ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, "
                              "client-key.pem)",
                              t.dir));
  if (!t.psk_file.empty()) RS_RETURN_IF_ERROR(load_psk(t.psk_file).status());
  return load_authz(t.authz).status();
}

const transport::SecurityRegistrar kRegistered({"openssl", make, check});

}  // namespace
}  // namespace ramshift::security
