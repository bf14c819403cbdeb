// Running under a service manager (packaging/systemd/): readiness and status through
// sd_notify(3), and log lines journald files at the right priority. Outside systemd
// (NOTIFY_SOCKET unset, stderr not the journal) every call here does nothing.
#pragma once

#include <string>

namespace ramshift::cli {

// READY=1 with STATUS=`status`: the service is listening (Type=notify units start their
// dependants now).
void notify_ready(const std::string& status);
// STATUS=`status`: what `systemctl status` shows.
void notify_status(const std::string& status);

// When stderr is the journal (JOURNAL_STREAM names it), log lines carry a "<N>" priority
// prefix (sd-daemon(3)) so journald files errors as errors; journald stamps the time.
void use_journal_format_under_journald();

}  // namespace ramshift::cli
