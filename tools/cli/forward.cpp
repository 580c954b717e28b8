// oklog forward [flags] ADDR...: streams stdin to ingest nodes, line by line and byte for byte.
//
// Targets are tried in turn; a failed connect or write moves to the next target after an
// exponential backoff (16 ms doubling to 1 s). After a failure the line that was being written
// is sent again in full on the next connection, so no line is skipped (OK Log skipped it);
// bytes the kernel had accepted for a dying ingester can still be lost, which is what the
// durable port and bulk mode (-bulk, forward_bulk.cpp) are for. An ingester that leaves
// (SIGTERM) half-closes its connections and reads on: the forwarder finishes the line in
// progress, half-closes, waits until the ingester has read it all, and moves to the next target
// without losing or repeating a line. At end of input the forwarder half-closes and waits
// until the ingester has read everything, then exits 0.
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

#include "common/address.h"
#include "common/flags.h"
#include "common/log.h"
#include "rpc/bulk_protocol.h"
#include "tools/cli/dial.h"
#include "tools/cli/forward_bulk.h"
#include "tools/cli/tools.h"

namespace oklog {
namespace {

constexpr size_t kReadChunk = 1 << 20;
// Writes go out in slices so a leaving ingester is noticed within one slice.
constexpr size_t kSendSlice = 256 << 10;

class Forwarder {
 public:
  Forwarder(std::vector<Address> targets, std::string prefix) : targets_(std::move(targets)), prefix_(std::move(prefix)) {}
  ~Forwarder() { Disconnect(); }

  int Run() {
    std::string in;       // bytes read from stdin, not yet framed
    std::string out;      // framed complete lines to send
    in.reserve(2 * kReadChunk);
    bool eof = false;
    while (!eof) {
      WaitForInput();
      size_t old = in.size();
      in.resize(old + kReadChunk);
      ssize_t n = ::read(0, in.data() + old, kReadChunk);
      if (n < 0 && errno == EINTR) {
        in.resize(old);
        continue;
      }
      if (n <= 0) {
        in.resize(old);
        eof = true;
        if (!in.empty() && in.back() != '\n') in.push_back('\n');  // the last line, terminated
      } else {
        in.resize(old + static_cast<size_t>(n));
      }
      // Send complete lines; a very long line without LF yet is sent as it comes once the
      // buffer is large (the ingester cuts it at its record size limit).
      size_t cut = in.size();
      if (!eof) {
        const void* lf = memrchr(in.data(), '\n', in.size());
        if (lf) cut = static_cast<size_t>(static_cast<const char*>(lf) - in.data()) + 1;
        else if (in.size() < 8 * kReadChunk) cut = 0;
      }
      if (cut == 0) continue;
      Frame(std::string_view(in.data(), cut), &out);
      in.erase(0, cut);
      if (!Send(out)) return 1;
      out.clear();
    }
    return Finish() ? 0 : 1;
  }

 private:
  void Frame(std::string_view lines, std::string* out) {
    if (prefix_.empty()) {
      out->append(lines);
      return;
    }
    size_t p = 0;
    while (p < lines.size()) {
      size_t lf = lines.find('\n', p);
      size_t end = lf == std::string_view::npos ? lines.size() : lf + 1;
      if (at_line_start_) out->append(prefix_);
      out->append(lines.substr(p, end - p));
      at_line_start_ = lf != std::string_view::npos;
      p = end;
    }
  }

  // Writes all of buf, reconnecting as needed. Returns false only if interrupted.
  bool Send(std::string_view buf) {
    size_t done = 0;
    while (done < buf.size()) {
      if (fd_ < 0 && !Connect()) return false;
      if (PeerClosing()) {
        done = HandOver(buf, done);
        continue;
      }
      ssize_t n = ::send(fd_, buf.data() + done, std::min(buf.size() - done, kSendSlice), MSG_NOSIGNAL);
      if (n > 0) {
        done += static_cast<size_t>(n);
        backoff_ms_ = 16;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      Logger("forward")->warn("write to {} failed: {}; failing over", targets_[current_].HostPort(),
                              n < 0 ? std::strerror(errno) : "closed");
      Disconnect();
      done = LineStart(buf, done);  // the interrupted line goes again in full
      Next();
    }
    return true;
  }

  // An ingester that leaves (SIGTERM, draining) half-closes each connection and reads on: the
  // EOF it sends is noticed here, between slices of a write.
  bool PeerClosing() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    char b[256];
    ssize_t n = ::recv(fd_, b, sizeof b, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }

  // Waits for stdin; an ingester that leaves meanwhile (an idle `tail -F | oklog forward`) is
  // handed over at once, so its drain need not wait for our next line.
  void WaitForInput() {
    while (fd_ >= 0) {
      pollfd p[2] = {{0, POLLIN, 0}, {fd_, POLLIN, 0}};
      int r = ::poll(p, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 || p[0].revents != 0) return;
      if (PeerClosing()) HandOver(std::string_view(), 0);
      else return;  // readable without EOF: nothing an ingester sends; let the write path decide
    }
  }

  // Hands over from a leaving ingester without losing or repeating a line: finish the line in
  // progress, half-close, and wait until the ingester has read everything and closed; then the
  // rest goes to the next target. Returns the offset in buf to continue from. If the ingester
  // fails on the way, falls back to resending the interrupted line.
  size_t HandOver(std::string_view buf, size_t done) {
    size_t end = done;
    if (done > 0 && buf[done - 1] != '\n') {
      size_t lf = buf.find('\n', done);
      end = lf == std::string_view::npos ? buf.size() : lf + 1;
    }
    bool ok = true;
    for (size_t off = done; ok && off < end;) {
      ssize_t n = ::send(fd_, buf.data() + off, end - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      ok = n > 0;
      if (ok) off += static_cast<size_t>(n);
    }
    ok = ok && WaitPeerClose(std::chrono::seconds(10));
    Logger("forward")->info("{} is leaving; {} to the next ingester", targets_[current_].HostPort(),
                            ok ? "handing over" : "resending the interrupted line");
    Disconnect();
    Next();
    return ok ? end : LineStart(buf, done);
  }

  // Where the line containing offset `done` starts (just after the last LF before it).
  static size_t LineStart(std::string_view buf, size_t done) {
    const void* lf = done ? memrchr(buf.data(), '\n', done) : nullptr;
    return lf ? static_cast<size_t>(static_cast<const char*>(lf) - buf.data()) + 1 : 0;
  }

  // Half-closes and waits (bounded) for the ingester to close its side: it has then read
  // everything we sent. False when it timed out or failed.
  bool WaitPeerClose(std::chrono::seconds bound) {
    ::shutdown(fd_, SHUT_WR);
    char b[256];
    auto deadline = std::chrono::steady_clock::now() + bound;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, 200);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) continue;
      ssize_t n = ::recv(fd_, b, sizeof b, 0);
      if (n == 0) return true;
      if (n < 0 && errno != EINTR) return false;
    }
    return false;
  }

  bool Connect() {
    fd_ = DialWithBackoff(targets_, &current_, &backoff_ms_);
    int sz = 1 << 20;
    setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    Logger("forward")->info("connected to {}", targets_[current_].HostPort());
    return true;
  }

  void Next() { current_ = (current_ + 1) % targets_.size(); }

  void Disconnect() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // At end of input: half-close and wait (bounded) until the ingester has read everything.
  bool Finish() {
    if (fd_ < 0) return true;
    WaitPeerClose(std::chrono::seconds(30));
    Disconnect();
    return true;
  }

  std::vector<Address> targets_;
  std::string prefix_;
  bool at_line_start_ = true;
  size_t current_ = 0;
  int fd_ = -1;
  int backoff_ms_ = 16;
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
  std::vector<Address> targets;
  for (const auto& t : *rest) {
    auto a = ParseAddress(t, bulk ? 7653 : 7651);
    if (!a.ok()) {
      std::cerr << a.status().message() << "\n";
      return 1;
    }
    targets.push_back(*a);
  }
  std::string prefix;
  for (const auto& p : prefixes) prefix += p + " ";
  ::signal(SIGPIPE, SIG_IGN);
  if (bulk) {
    BulkForwardOptions bo;
    bo.segment_bytes = static_cast<size_t>(bulk_size);
    bo.segment_age = std::chrono::duration_cast<std::chrono::milliseconds>(bulk_age);
    bo.window = static_cast<size_t>(bulk_window);
    bo.ack_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(bulk_ack_timeout);
    return RunBulkForward(std::move(targets), std::move(prefix), bo);
  }
  Forwarder f(std::move(targets), std::move(prefix));
  return f.Run();
}

}  // namespace oklog
