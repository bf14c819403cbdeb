// The --tls-* options as the security library reads them from the transport's generic
// settings (ramshift/transport/settings.h), and the credential files they name.
//
// Layout of --tls-dir, the one QEMU's tls-creds-x509 and libvirt's /etc/pki/qemu use:
//   ca-cert.pem        the CA that signed both sides' certificates (required)
//   server-cert.pem    this host's certificate when it accepts (receive, bench --server, bridge
//   dest) server-key.pem     ... and its private key client-cert.pem    this host's certificate
//   when it connects (send, bench, bridge source) client-key.pem     ... and its private key
// --tls-psk FILE: QEMU's keys.psk, one "identity:hexkey" per line; the connecting side offers
// the first line, the accepting side takes any of them.
// --tls-authz: who may connect to the accepting side: a file with one identity per line, or
// the identities themselves separated by ';'. An identity is a certificate subject as
// `ramshift doctor` prints it (RFC 2253: "CN=host-a,O=example") or a PSK identity.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/transport/settings.h"

namespace ramshift::security {

struct TlsSettings {
  std::string dir;       // --tls-dir; empty: no X.509
  std::string psk_file;  // --tls-psk; empty: no PSK
  std::string authz;     // --tls-authz as given; empty: any authenticated peer
  // --tls-ktls: let OpenSSL hand the record layer to the kernel (TCP_ULP "tls") where the
  // kernel offers it; user-space TLS otherwise.
  bool ktls = true;

  // kInvalidArgument when both or neither of dir and psk_file are given, or a flag is malformed.
  static Result<TlsSettings> from(const transport::BackendSettings& settings);
  std::string file(const char* name) const { return dir + "/" + name; }
};

// One "identity:key" line of a keys.psk file.
struct PskEntry {
  std::string identity;
  std::vector<uint8_t> key;
};
// Parses QEMU's keys.psk text (blank lines and '#' comments allowed). kInvalidArgument names
// the line that is wrong; a key shorter than 16 bytes is refused (too weak to protect a guest).
Result<std::vector<PskEntry>> parse_psk(const std::string& text, const std::string& path);
Result<std::vector<PskEntry>> load_psk(const std::string& path);

// The identities --tls-authz allows; empty: every authenticated peer.
Result<std::vector<std::string>> load_authz(const std::string& authz);

// One credential check for `ramshift doctor`.
struct CredentialCheck {
  std::string name;  // "ca-cert.pem", "server-key.pem matches server-cert.pem", ...
  bool ok = false;
  bool present = true;  // false: an optional file is absent (not a failure)
  std::string detail;   // subject and expiry, or what is wrong and what to do
};
// Checks every file the settings name: readable, parses, not expired (nor not yet valid),
// signed by ca-cert.pem, key matches certificate; PSK keys parse; authz list loads.
std::vector<CredentialCheck> check_credentials(const TlsSettings& settings);

}  // namespace ramshift::security
