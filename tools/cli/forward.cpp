// oklog forward [flags] ADDR...: streams stdin to ingest nodes, line by line and byte for byte.
//
// Targets are tried in turn; a failed connect or write moves to the next target after an
// exponential backoff (16 ms doubling to 1 s). Each connection starts by asking for the back
// channel ("oklog-acks 1", segments/ingest_acks.h; the ingester strips it, and answers with
// its port's kind), unless -plain. Lines go out from one buffer of framed lines:
//
// - To a durable port (it answers "oklog-durable 1", or -durable says so) a line stays in the
//   buffer until the ingester acknowledges it ("ack N": on disk). After a failure everything
//   unacknowledged is sent again on the next connection, so nothing is lost; a line whose ack
//   was lost in the failure is stored twice (new ULIDs): delivery is at least once in that
//   window. The buffer holds at most -max-unconfirmed bytes; when it is full, stdin waits.
// - To a fast port ("oklog-fast 1", or no answer within 250 ms, or -plain) a line leaves the
//   buffer once written. When a connection then fails (an error, or an EOF without "leave"),
//   its lines may be lost: they are counted as possibly lost (all lines written on that
//   connection: the forwarder cannot know which the ingester read). The line in progress is
//   sent again in full on the next connection (OK Log skipped it).
// Sending starts at once; until the answer comes, what was sent is held as on a durable port.
//
// An ingester that leaves (SIGTERM, a full disk, shedding, idle) says "leave" (a plain
// connection: just half-closes): the forwarder finishes the line in progress, half-closes, and
// (durable) reads the last acks until the ingester closes; then it moves to the next target,
// losing and repeating nothing. At end of input it half-closes and waits, for at most
// -confirm-timeout (reconnecting and resending as needed), until every line is acknowledged
// (durable) or the ingester has read everything (fast). Exit 0 only when every line was
// confirmed that way and none is possibly lost; otherwise the counts go to stderr and the exit
// status is 1.
// TLS (-tls-ca, -tls-cert, -tls-key): each connection is a ClientConn (client_conn.h) that
// completes its handshake before the first line; a failed handshake fails over like a failed
// connect; -bulk takes the same flags (forward_bulk.cpp).
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iostream>
#include <optional>
#include <thread>

#include "common/address.h"
#include "common/flags.h"
#include "common/log.h"
#include "rpc/bulk_protocol.h"
#include "segments/ingest_acks.h"
#include "tools/cli/client_conn.h"
#include "tools/cli/dial.h"
#include "tools/cli/forward_bulk.h"
#include "tools/cli/tools.h"

namespace oklog {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kReadChunk = 1 << 20;
// Writes go out in slices so acks and a leaving ingester are noticed between them.
constexpr size_t kSendSlice = 256 << 10;
// A line this long without LF is given up piecewise (the ingester cuts it far sooner).
constexpr size_t kMaxHeldLine = 16 << 20;
// Without -durable, how long a new connection holds what it sent (as if durable) for the
// ingester's answer to the request; without one by then it is a fast port that does not know
// the back channel.
constexpr auto kHelloWait = std::chrono::milliseconds(250);
// How long a leaving ingester may take to close after we half-closed.
constexpr auto kHandOverWait = std::chrono::seconds(10);

enum class PortKind { kDetect, kDurable, kPlain };

struct ForwardOptions {
  std::string prefix;
  PortKind kind = PortKind::kDetect;
  std::chrono::milliseconds confirm_timeout{30000};
  size_t max_unconfirmed_bytes = 64 << 20;
  std::shared_ptr<const crypto::TlsContext> tls;  // null: plain TCP
};

size_t CountLines(std::string_view s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

class Forwarder {
 public:
  Forwarder(std::vector<Address> targets, ForwardOptions o) : targets_(std::move(targets)), opts_(std::move(o)) {}
  ~Forwarder() { Disconnect(); }

  int Run() {
    in_.reserve(2 * kReadChunk);
    for (;;) {
      if (eof_ && buf_.empty() && (fd_ < 0 || durable_)) break;  // all confirmed (fast: see below)
      const auto now = Clock::now();
      if (eof_ && now >= finish_deadline_) break;
      if (fd_ >= 0 && detecting_ && now >= hello_deadline_) {  // no hello: a fast port
        detecting_ = false;
        Logger("forward")->info("connected to {} (fast port)", targets_[current_].HostPort());
        DropUpTo(sent_);
      }
      if (fd_ < 0) {
        if (buf_.empty() && eof_) break;
        if (!buf_.empty()) Connect();  // stdin is read on between attempts
      }
      if (fd_ >= 0 && !wr_shut_ && sent_ == SendLimit() && (leaving_ || (eof_ && sent_ == buf_.size()))) {
        // Everything that goes to this connection is sent: half-close, then read to its end.
        conn_->ShutdownWrite();
        wr_shut_ = true;
        if (leaving_) handover_deadline_ = now + kHandOverWait;
        if (!durable_ && peer_eof_) {  // a fast ingester that left: it reads what we sent, then closes
          EndConnection(ConnEnd::kClean);
          continue;
        }
      }
      if (fd_ >= 0 && wr_shut_ && leaving_ && now >= handover_deadline_) {
        EndConnection(ConnEnd::kFailed, "did not close after the hand-over");
        continue;
      }
      pollfd p[2];
      int n = 0;
      int in_idx = -1, fd_idx = -1;
      const bool want_input = !eof_ && buf_.size() < opts_.max_unconfirmed_bytes;
      if (!want_input && !eof_ && !warned_full_) {
        warned_full_ = true;
        Logger("forward")->warn("{} bytes await acknowledgement; reading stdin waits for acks", buf_.size());
      }
      if (want_input) {
        in_idx = n;
        p[n++] = {0, POLLIN, 0};
      }
      if (fd_ >= 0) {
        fd_idx = n;
        short ev = peer_eof_ ? 0 : POLLIN;
        // TLS: ciphertext the socket did not take yet waits for POLLOUT too.
        if (!wr_shut_ && (sent_ < SendLimit() || conn_->has_pending_output())) ev |= POLLOUT;
        p[n++] = {fd_, ev, 0};
      }
      if (n == 0) continue;  // nothing to wait for: the checks above decide
      int timeout = -1;
      auto bound = [&](Clock::time_point t) {
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - now).count() + 1;
        timeout = timeout < 0 ? static_cast<int>(std::max<int64_t>(ms, 0))
                              : std::min(timeout, static_cast<int>(std::max<int64_t>(ms, 0)));
      };
      if (eof_) bound(finish_deadline_);
      if (fd_ < 0 && !buf_.empty()) timeout = 0;  // Connect just waited its backoff: try again
      if (fd_ >= 0 && wr_shut_ && leaving_) bound(handover_deadline_);
      if (fd_ >= 0 && detecting_) bound(hello_deadline_);
      int r = ::poll(p, static_cast<nfds_t>(n), timeout);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) {
        Logger("forward")->error("poll: {}", std::strerror(errno));
        break;
      }
      if (in_idx >= 0 && p[in_idx].revents != 0) {
        ReadInput();
        // Not connected: take all the input there is (up to the bound) before the next attempt,
        // which waits its backoff.
        while (fd_ < 0 && !eof_ && buf_.size() < opts_.max_unconfirmed_bytes && StdinReadable()) ReadInput();
      }
      if (fd_idx >= 0 && fd_ >= 0 && (p[fd_idx].revents & (POLLIN | POLLHUP | POLLERR))) ReadServer();
      if (fd_idx >= 0 && fd_ >= 0 && (p[fd_idx].revents & POLLOUT)) SendSome();
    }
    return Report();
  }

 private:
  enum class ConnEnd { kClean, kFailed };

  static bool StdinReadable() {
    pollfd p{0, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0 && p.revents != 0;
  }

  // One read of stdin; complete lines are framed into buf_.
  void ReadInput() {
    size_t old = in_.size();
    in_.resize(old + kReadChunk);
    ssize_t n = ::read(0, in_.data() + old, kReadChunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
      in_.resize(old);
      return;
    }
    if (n <= 0) {
      in_.resize(old);
      eof_ = true;
      finish_deadline_ = Clock::now() + opts_.confirm_timeout;
      if (!in_.empty() && in_.back() != '\n') in_.push_back('\n');  // the last line, terminated
    } else {
      in_.resize(old + static_cast<size_t>(n));
    }
    // Complete lines only; a very long line without LF yet goes as it comes once the buffer is
    // large (the ingester cuts it at its record size limit).
    size_t cut = in_.size();
    if (!eof_) {
      const void* lf = memrchr(in_.data(), '\n', in_.size());
      if (lf) cut = static_cast<size_t>(static_cast<const char*>(lf) - in_.data()) + 1;
      else if (in_.size() < 8 * kReadChunk) cut = 0;
    }
    if (cut == 0) return;
    Frame(std::string_view(in_.data(), cut));
    in_.erase(0, cut);
  }

  void Frame(std::string_view lines) {
    if (opts_.prefix.empty()) {
      buf_.append(lines);
      return;
    }
    size_t p = 0;
    while (p < lines.size()) {
      size_t lf = lines.find('\n', p);
      size_t end = lf == std::string_view::npos ? lines.size() : lf + 1;
      if (at_line_start_) buf_.append(opts_.prefix);
      buf_.append(lines.substr(p, end - p));
      at_line_start_ = lf != std::string_view::npos;
      p = end;
    }
  }

  // How far into buf_ this connection may send: all of it, or while leaving, to the end of the
  // line in progress.
  size_t SendLimit() const {
    if (!leaving_) return buf_.size();
    if (sent_ == 0 || buf_[sent_ - 1] == '\n') return sent_;
    size_t lf = buf_.find('\n', sent_);
    return lf == std::string::npos ? buf_.size() : lf + 1;
  }

  void SendSome() {
    const size_t limit = SendLimit();
    if (sent_ >= limit) {
      if (!conn_->FlushPending()) EndConnection(ConnEnd::kFailed, std::strerror(errno));
      return;
    }
    ssize_t n = conn_->Send(buf_.data() + sent_, std::min(limit - sent_, kSendSlice), MSG_DONTWAIT);
    if (n > 0) {
      sent_ += static_cast<size_t>(n);
      backoff_ms_ = 16;
      if (!durable_ && !detecting_) DropUpTo(sent_);  // fast: nothing to wait for
      return;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
    EndConnection(ConnEnd::kFailed, n < 0 ? std::strerror(errno) : "closed");
  }

  // Drops the sent lines of buf_ up to `upto` (relative): to its last LF, or all of it for a
  // line longer than kMaxHeldLine. Fast: they count as written on this connection.
  void DropUpTo(size_t upto) {
    upto = std::min(upto, sent_);
    const void* lf = upto ? memrchr(buf_.data(), '\n', upto) : nullptr;
    size_t cut = lf ? static_cast<size_t>(static_cast<const char*>(lf) - buf_.data()) + 1 : 0;
    if (cut == 0 && upto >= kMaxHeldLine) cut = upto;
    if (cut == 0) return;
    const size_t lines = CountLines(std::string_view(buf_.data(), cut));
    if (!durable_) lines_on_conn_ += lines;
    buf_.erase(0, cut);
    base_ += cut;
    sent_ -= cut;
  }

  // Reads what the ingester sent: hello, acks, leave; an EOF or error ends the connection.
  void ReadServer() {
    char b[4096];
    for (;;) {
      ssize_t n = conn_->Recv(b, sizeof b, MSG_DONTWAIT);
      if (n > 0) {
        parser_.Feed(std::string_view(b, static_cast<size_t>(n)));
        while (auto m = parser_.Next()) OnMessage(*m);
        if (fd_ < 0) return;
        continue;
      }
      if (n < 0 && (errno == EINTR)) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n == 0) return OnPeerEof();
      return EndConnection(ConnEnd::kFailed, std::strerror(errno));
    }
  }

  void OnMessage(const IngestAckParser::Message& m) {
    switch (m.kind) {
      case IngestAckParser::Message::Kind::kFastHello:
        if (detecting_) {
          detecting_ = false;
          Logger("forward")->info("connected to {} (fast port)", targets_[current_].HostPort());
          DropUpTo(sent_);
        }
        break;
      case IngestAckParser::Message::Kind::kDurableHello:
        if (!durable_) {
          if (!detecting_) {
            Logger("forward")->warn("{} greeted as a durable port late; its acks are ignored (use -durable)",
                                    targets_[current_].HostPort());
          } else {
            durable_ = true;
            detecting_ = false;
            Logger("forward")->info("connected to {} (durable port)", targets_[current_].HostPort());
          }
        }
        break;
      case IngestAckParser::Message::Kind::kAck:
        if (durable_ && m.count > 0 && conn_start_ + m.count > base_) DropUpTo(conn_start_ + m.count - base_);
        break;
      case IngestAckParser::Message::Kind::kLeave:
        if (!leaving_) Logger("forward")->info("{} is leaving; handing over", targets_[current_].HostPort());
        leaving_ = true;
        break;
    }
  }

  void OnPeerEof() {
    peer_eof_ = true;
    if (detecting_) {  // closed without a greeting: a fast port that read what we sent
      detecting_ = false;
      DropUpTo(sent_);
    }
    if (durable_) {
      // The ingester closes after reading our half-close: everything it acked is safe, and
      // whatever is still unacknowledged goes again to the next one.
      if (wr_shut_ && buf_.empty()) return EndConnection(ConnEnd::kClean);
      return EndConnection(wr_shut_ || leaving_ ? ConnEnd::kClean : ConnEnd::kFailed,
                           sent_ > 0 ? "closed with lines unacknowledged; resending them" : "closed");
    }
    // Fast: an EOF after "leave", or after our own half-close at the end, is the ingester
    // having read everything; any other EOF is a crash or a failed write on its side.
    if (wr_shut_) return EndConnection(ConnEnd::kClean);
    if (!leaving_) return EndConnection(ConnEnd::kFailed, "closed without handing over");
    // leaving: the loop finishes the line, half-closes, and ends the connection cleanly.
  }

  // Ends the current connection. kFailed on a fast connection makes its lines possibly lost;
  // on a durable one its unacknowledged lines stay and are resent. The line in progress is
  // always sent again whole.
  void EndConnection(ConnEnd how, const std::string& why = "") {
    if (fd_ < 0) return;
    if (how == ConnEnd::kFailed) {
      Logger("forward")->warn("connection to {} failed: {}; failing over", targets_[current_].HostPort(), why);
      if (!durable_ && lines_on_conn_ > 0) {
        possibly_lost_ += lines_on_conn_;
        Logger("forward")->warn("{} line(s) written to {} may be lost", lines_on_conn_, targets_[current_].HostPort());
      }
    } else if (!why.empty()) {
      Logger("forward")->info("{}: {}", targets_[current_].HostPort(), why);
    }
    Disconnect();
    current_ = (current_ + 1) % targets_.size();
  }

  // Tries to connect and learns the port's kind: one attempt (and its backoff) while stdin is
  // open, so input is still read meanwhile; after its end, attempts until the finish deadline.
  // False when not connected.
  bool Connect() {
    const Clock::time_point deadline = eof_ ? finish_deadline_ : Clock::now() + std::chrono::milliseconds(1);
    int fd = DialWithBackoff(targets_, &current_, &backoff_ms_, deadline);
    if (fd < 0) return false;
    auto c = ClientConn::Open(fd, opts_.tls, targets_[current_].host, std::chrono::seconds(10));
    if (!c.ok()) {  // fd closed by Open; fails over like a refused connect, after the backoff
      Logger("forward")->warn("{}: {}; retrying in {} ms", targets_[current_].HostPort(), c.status().message(),
                              backoff_ms_);
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms_));
      backoff_ms_ = std::min(backoff_ms_ * 2, 1024);
      current_ = (current_ + 1) % targets_.size();
      return false;
    }
    conn_ = std::move(c).value();
    fd_ = fd;
    int sz = 1 << 20;
    setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    parser_ = IngestAckParser();
    durable_ = opts_.kind == PortKind::kDurable;
    if (opts_.kind != PortKind::kPlain &&
        conn_->Send(kAckRequest.data(), kAckRequest.size(), 0) != static_cast<ssize_t>(kAckRequest.size())) {
      Logger("forward")->warn("sending to {}: {}", targets_[current_].HostPort(), std::strerror(errno));
      Disconnect();
      current_ = (current_ + 1) % targets_.size();
      return false;
    }
    leaving_ = wr_shut_ = peer_eof_ = false;
    sent_ = 0;
    conn_start_ = base_;
    lines_on_conn_ = 0;
    warned_full_ = false;
    // The ingester answers the request at once. Without -durable, sending starts at once too,
    // but what is sent stays held (as on a durable port) until the answer comes or kHelloWait
    // passes. -plain: a fast port, nothing to wait for.
    detecting_ = opts_.kind == PortKind::kDetect;
    hello_deadline_ = Clock::now() + kHelloWait;
    if (durable_) Logger("forward")->info("connected to {} (durable port)", targets_[current_].HostPort());
    return true;
  }

  void Disconnect() {
    conn_.reset();  // closes fd_
    fd_ = -1;
    sent_ = 0;
  }

  int Report() {
    const size_t unconfirmed = CountLines(buf_) + (!buf_.empty() && buf_.back() != '\n' ? 1 : 0);
    // A fast connection still open at the deadline: it never confirmed reading what we wrote.
    if (fd_ >= 0 && !durable_ && lines_on_conn_ > 0) possibly_lost_ += lines_on_conn_;
    lines_on_conn_ = 0;
    Disconnect();
    if (unconfirmed > 0)
      std::cerr << "forward: " << unconfirmed << " line(s) could not be confirmed (not acknowledged by a durable "
                << "port, or never sent) within -confirm-timeout\n";
    if (possibly_lost_ > 0)
      std::cerr << "forward: " << possibly_lost_ << " line(s) possibly lost (written to fast-port connections that "
                << "failed; use the durable port or -bulk to be sure)\n";
    return unconfirmed == 0 && possibly_lost_ == 0 ? 0 : 1;
  }

  std::vector<Address> targets_;
  ForwardOptions opts_;
  std::string in_;   // bytes read from stdin, not yet framed
  std::string buf_;  // framed lines not yet confirmed (durable: acked; fast: written)
  uint64_t base_ = 0;        // stream offset of buf_[0]
  size_t sent_ = 0;          // bytes of buf_ sent on this connection
  uint64_t conn_start_ = 0;  // stream offset of this connection's first byte (acks count from it)
  bool at_line_start_ = true;
  bool eof_ = false;
  Clock::time_point finish_deadline_{};
  Clock::time_point handover_deadline_{};
  bool warned_full_ = false;
  // The current connection.
  size_t current_ = 0;
  int fd_ = -1;                     // conn_->fd() while connected
  std::unique_ptr<ClientConn> conn_;  // owns fd_
  int backoff_ms_ = 16;
  IngestAckParser parser_;
  bool durable_ = false;
  bool leaving_ = false;   // the ingester said "leave"
  bool wr_shut_ = false;   // we half-closed
  bool peer_eof_ = false;  // the ingester half-closed
  bool detecting_ = false;  // no -durable: waiting (while sending) for a durable hello
  Clock::time_point hello_deadline_{};
  size_t lines_on_conn_ = 0;  // fast: lines written on this connection
  uint64_t possibly_lost_ = 0;
};

}  // namespace

int RunForward(const std::vector<std::string>& args) {
  bool debug = false;
  std::string api;
  std::vector<std::string> prefixes;
  FlagSet fs("forward");
  fs.Bool("debug", &debug, "debug logging");
  fs.String("api", &api, "accepted for OK Log compatibility (no metrics server yet)");
  fs.StringList("prefix", &prefixes, "prefix added to every record, joined by spaces (repeatable)");
  bool durable = false;
  Nanos confirm_timeout = std::chrono::seconds(30);
  int64_t max_unconfirmed = 64 << 20;
  fs.Bool("durable", &durable,
          "the targets are durable ports (7652): keep every line until acknowledged (detected anyway from the port's greeting)");
  fs.Duration("confirm-timeout", &confirm_timeout,
              "at end of input, how long to wait (reconnecting and resending) until every line is confirmed; exit 1 if not");
  fs.Int("max-unconfirmed", &max_unconfirmed, "durable: bytes awaiting acknowledgement before reading stdin pauses");
  std::string tls_ca, tls_cert, tls_key;
  fs.String("tls-ca", &tls_ca, "connect over TLS, trusting this PEM CA for the ingesters' certificates");
  fs.String("tls-cert", &tls_cert, "PEM client certificate to present over TLS (needs -tls-key)");
  fs.String("tls-key", &tls_key, "PEM private key of -tls-cert");
  bool plain = false;
  fs.Bool("plain", &plain,
          "send the lines alone, without asking for acknowledgements (for ingesters other than oklog's); fast-port semantics");
  bool bulk = false;
  int64_t bulk_size = 4 << 20, bulk_window = 8;
  Nanos bulk_age = std::chrono::seconds(1);
  Nanos bulk_ack_timeout = std::chrono::seconds(30);
  fs.Bool("bulk", &bulk,
          "send whole segments to the bulk port (7653); each is kept and resent until it is replicated N times");
  fs.Int("bulk.segment-size", &bulk_size, "bulk: cut a segment at this many bytes");
  fs.Duration("bulk.segment-age", &bulk_age, "bulk: cut a segment this long after its first line");
  fs.Int("bulk.window", &bulk_window, "bulk: segments awaiting acknowledgement before reading pauses");
  fs.Duration("bulk.ack-timeout", &bulk_ack_timeout,
              "bulk: move to the next ingester when a sent segment is not acknowledged within this");
  auto rest = fs.Parse(args);
  if (!rest.ok()) {
    if (rest.status().code() == Code::kNotFound) {
      std::cout << "Usage: oklog forward [flags] <ingester> [<ingester>...]\n" << fs.Usage();
      return 0;
    }
    std::cerr << rest.status().message() << "\n";
    return 1;
  }
  if (rest->empty()) {
    std::cerr << "forward: at least one ingester address is required\n";
    return 1;
  }
  SetLogLevel(debug ? "debug" : "warn");
  if (bulk && (bulk_size < 1024 || static_cast<uint64_t>(bulk_size) > rpc::kBulkMaxSegmentBytes || bulk_window < 1 ||
               bulk_age < std::chrono::milliseconds(1) || bulk_ack_timeout < std::chrono::milliseconds(1))) {
    std::cerr << "forward: -bulk.segment-size must be 1024.." << rpc::kBulkMaxSegmentBytes
              << ", -bulk.window >= 1, -bulk.segment-age > 0, -bulk.ack-timeout > 0\n";
    return 1;
  }
  if (plain && (durable || bulk)) {
    std::cerr << "forward: -plain cannot be combined with -durable or -bulk\n";
    return 1;
  }
  if (confirm_timeout < std::chrono::milliseconds(1) || max_unconfirmed < (1 << 20)) {
    std::cerr << "forward: -confirm-timeout must be > 0 and -max-unconfirmed >= 1048576\n";
    return 1;
  }
  std::vector<Address> targets;
  for (const auto& t : *rest) {
    auto a = ParseAddress(t, bulk ? 7653 : durable ? 7652 : 7651);
    if (!a.ok()) {
      std::cerr << a.status().message() << "\n";
      return 1;
    }
    targets.push_back(*a);
  }
  std::string prefix;
  for (const auto& p : prefixes) prefix += p + " ";
  std::shared_ptr<const crypto::TlsContext> tls;
  if (!tls_ca.empty() || !tls_cert.empty() || !tls_key.empty()) {
    auto ctx = crypto::TlsContext::Create(crypto::TlsRole::kClient, {tls_cert, tls_key, tls_ca, "client"}, nullptr);
    if (!ctx.ok()) {
      std::cerr << "forward: -tls-*: " << ctx.status().message() << "\n";
      return 1;
    }
    tls = *ctx;
  }
  ::signal(SIGPIPE, SIG_IGN);
  if (bulk) {
    BulkForwardOptions bo;
    bo.segment_bytes = static_cast<size_t>(bulk_size);
    bo.segment_age = std::chrono::duration_cast<std::chrono::milliseconds>(bulk_age);
    bo.window = static_cast<size_t>(bulk_window);
    bo.ack_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(bulk_ack_timeout);
    bo.tls = tls;
    return RunBulkForward(std::move(targets), std::move(prefix), bo);
  }
  ForwardOptions fo;
  fo.prefix = std::move(prefix);
  fo.kind = durable ? PortKind::kDurable : plain ? PortKind::kPlain : PortKind::kDetect;
  fo.confirm_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(confirm_timeout);
  fo.max_unconfirmed_bytes = static_cast<size_t>(max_unconfirmed);
  fo.tls = std::move(tls);
  Forwarder f(std::move(targets), std::move(fo));
  return f.Run();
}

}  // namespace oklog
