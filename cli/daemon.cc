#include "daemon.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "ramshift/base/log.h"

#ifdef RAMSHIFT_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace ramshift::cli {
namespace {

void notify(const std::string& message) {
#ifdef RAMSHIFT_HAVE_SYSTEMD
  // 0: not under a service manager; negative: the manager's socket refused it. Neither stops
  // the service: it runs the same, only `systemctl` knows less.
  int r = sd_notify(0, message.c_str());
  if (r < 0) log::warn("sd_notify: {}", r);
#else
  if (std::getenv("NOTIFY_SOCKET"))
    log::warn(
        "NOTIFY_SOCKET is set but this ramshift was built without libsystemd; use "
        "Type=simple units");
  (void)message;
#endif
}

}  // namespace

void notify_ready(const std::string& status) { notify("READY=1\nSTATUS=" + status); }

void notify_status(const std::string& status) { notify("STATUS=" + status); }

void use_journal_format_under_journald() {
  // JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected to stdout/stderr; it is
  // inherited by children whose stderr went elsewhere, so compare it with stderr itself.
  const char* js = std::getenv("JOURNAL_STREAM");
  if (!js) return;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return;
  if (st.st_dev == dev && st.st_ino == ino) log::set_format(log::Format::kJournal);
}

}  // namespace ramshift::cli
