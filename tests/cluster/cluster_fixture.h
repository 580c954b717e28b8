// The cluster tests' fixture: real `oklog ingest` and `oklog store` processes on loopback ports
// they pick (port 0, read back from -ports.file), told only the first node as seed, fed by the
// real `oklog forward`, queried over HTTP. Replication factor 2; short pending timeout and gossip
// preset `local` so faults resolve in seconds. Shared by cluster_test.cpp and security_test.cpp.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "common/http_client.h"
#include "common/http_server.h"
#include "test_util.h"

namespace oklog {

class Node {
 public:
  Node(const std::string& dir, const std::string& name, const std::string& mode, uint16_t seed_port)
      : dir_(dir), name_(name), ports_file_(dir + "/" + name + ".ports") {
    std::filesystem::create_directories(dir + "/" + name);
    args_ = {OklogBinary(), mode, "-api", "127.0.0.1:0", "-ingest.fast", "127.0.0.1:0", "-ingest.durable",
             "127.0.0.1:0", "-ingest.bulk", "127.0.0.1:0", "-cluster", "127.0.0.1:0", "-ports.file", ports_file_,
             "-cluster.preset", "local",
             "-ingest.path", dir + "/" + name + "/ingest", "-store.path", dir + "/" + name + "/store",
             "-ingest.segment-flush-age", "200ms", "-ingest.segment-pending-timeout", "3s",
             "-store.segment-replication-factor", "2",
             // A cluster name of this test's own: a node of a test running beside it (-j2) that
             // gossips to a recycled port of a killed member must not merge the two clusters.
             "-cluster.name", "t" + std::to_string(std::hash<std::string>{}(dir))};
    if (seed_port) args_.insert(args_.end(), {"-peer", "127.0.0.1:" + std::to_string(seed_port)});
  }
  // The first start picks every port. A restart keeps the cluster port the first run reported: it
  // is the node's gossip name, so the same member comes back. The other ports are new each run.
  void Start() {
    std::vector<std::string> args = args_;
    if (cluster_ != 0) *(std::find(args.begin(), args.end(), "-cluster") + 1) = "127.0.0.1:" + std::to_string(cluster_);
    std::filesystem::remove(ports_file_);
    proc_ = std::make_unique<Process>(args, dir_, name_ + "-" + std::to_string(++starts_));
    auto ports = WaitForPorts(ports_file_, [&] { return proc_->running(); });
    ASSERT_TRUE(proc_->running()) << name_ << " exited: " << proc_->Stderr();
    api_ = ports["api"];
    fast_ = ports["ingest.fast"];  // 0 on a store node
    bulk_ = ports["ingest.bulk"];
    cluster_ = ports["cluster"];
    ASSERT_TRUE(api_ != 0 && cluster_ != 0) << name_ << ": " << ReadFile(ports_file_) << proc_->Stderr();
    // Up: /health answers, OK or (a node started on a full disk) 503 degraded.
    ASSERT_TRUE(WaitFor([&] {
      const int st = proc_->running() ? Get("/health").status : 0;
      return !proc_->running() || st == 200 || st == 503;
    }, std::chrono::seconds(20)));
    ASSERT_TRUE(proc_->running()) << name_ << " exited: " << proc_->Stderr();
  }
  void Kill9() {
    proc_->Signal(SIGKILL);
    proc_->Wait(std::chrono::seconds(10));
  }
  void Signal(int sig) { proc_->Signal(sig); }
  // Sets a flag's value for the next Start().
  void SetFlag(const std::string& flag, const std::string& value) {
    auto it = std::find(args_.begin(), args_.end(), flag);
    if (it != args_.end()) {
      *(it + 1) = value;
    } else {
      args_.insert(args_.end(), {flag, value});
    }
  }
  int Term() {
    proc_->Signal(SIGTERM);
    return proc_->Wait(std::chrono::seconds(30));
  }
  HttpClientResponse Get(const std::string& pq, const char* method = "GET") {
    HttpClientOptions o;
    o.timeout = std::chrono::seconds(30);
    // A body that stops arriving is a failure to report, not a reason to wait for ever.
    o.body_idle_timeout = std::chrono::seconds(20);
    auto r = HttpFetchAll(method, "127.0.0.1:" + std::to_string(api_) + pq, o);
    if (!r.ok() && r.status().code() == Code::kTimedOut) {
      ++timeouts_;  // a stalled answer: the tests that expect a working node check this is 0
      std::fprintf(stderr, "%s %s on %s: %s\n", method, pq.c_str(), name_.c_str(), r.status().ToString().c_str());
    }
    return r.ok() ? r.value() : HttpClientResponse{};
  }
  double Metric(const std::string& line_prefix) {
    std::string text = Get("/metrics").body;
    auto pos = text.find("\n" + line_prefix + " ");
    return pos == std::string::npos ? 0 : std::stod(text.substr(pos + line_prefix.size() + 2));
  }
  size_t LiveMembers() {
    std::string j = Get("/cluster").body;
    size_t n = 0;
    for (size_t p = j.find("\"state\":\"alive\""); p != std::string::npos; p = j.find("\"state\":\"alive\"", p + 1)) ++n;
    return n;
  }
  // A slow client: a small receive buffer, and no reading at all for `pause` after the request,
  // so the node must hold back (bounded) and then still finish the answer. Returns the body
  // (de-chunked), or "" when the answer did not end within 30 s of reading.
  std::string GetPausing(const std::string& pq, std::chrono::milliseconds pause) {
    int fd = ConnectLoopback(api_, 64 << 10);
    std::string raw;
    if (fd >= 0) {
      std::string req = "GET " + pq + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
        std::this_thread::sleep_for(pause);
        timeval tv{30, 0};
        ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[65536];
        for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;) raw.append(buf, static_cast<size_t>(n));
      }
      ::close(fd);
    }
    size_t pos = raw.find("\r\n\r\n");
    if (pos == std::string::npos || raw.find("Transfer-Encoding: chunked") > pos) return "";
    std::string body;
    for (pos += 4;;) {  // chunks: size CRLF data CRLF ... 0 CRLF CRLF
      size_t eol = raw.find("\r\n", pos);
      if (eol == std::string::npos) return "";  // cut short
      size_t n = std::stoul(raw.substr(pos, eol - pos), nullptr, 16);
      if (n == 0) return body;
      if (eol + 2 + n > raw.size()) return "";
      body.append(raw, eol + 2, n);
      pos = eol + 2 + n + 2;
    }
  }
  uint16_t cluster_port() const { return cluster_; }
  uint16_t fast_port() const { return fast_; }
  uint16_t bulk_port() const { return bulk_; }
  const std::string& name() const { return name_; }
  std::string Stderr() { return proc_ ? proc_->Stderr() : ""; }

 private:
  std::string dir_, name_, ports_file_;
  uint16_t api_ = 0, fast_ = 0, bulk_ = 0, cluster_ = 0;  // as the node reported them
  std::vector<std::string> args_;
  std::unique_ptr<Process> proc_;
  int starts_ = 0;
 public:
  int timeouts_ = 0;
};

// Lines "tag i padding" in a file, for `oklog forward` stdin.
inline std::string WriteInput(const std::string& dir, const std::string& tag, size_t n) {
  std::string path = dir + "/" + tag + ".txt";
  std::string data;
  data.reserve(n * 48);
  for (size_t i = 0; i < n; ++i) data += tag + " " + std::to_string(i) + " the quick brown fox\n";
  WriteFile(path, data);
  return path;
}

// ULIDs and payloads of a query body; checks ULID order.
struct Body {
  std::vector<std::string> ulids;
  std::map<std::string, size_t> payloads;  // payload -> copies
  bool sorted = true;
};
inline Body ParseBody(const std::string& body) {
  Body b;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t nl = body.find('\n', pos);
    if (nl == std::string::npos) break;
    std::string line = body.substr(pos, nl - pos);
    if (line.size() > 27) {
      std::string u = line.substr(0, 26);
      if (!b.ulids.empty() && u <= b.ulids.back()) b.sorted = false;
      b.ulids.push_back(u);
      b.payloads[line.substr(27)]++;
    }
    pos = nl + 1;
  }
  return b;
}

class ClusterTest : public ::testing::Test {
 protected:
  Node* Add(const std::string& name, const std::string& mode,
            const std::vector<std::pair<std::string, std::string>>& flags = {}) {
    uint16_t seed = nodes_.empty() ? 0 : nodes_.front()->cluster_port();
    nodes_.push_back(std::make_unique<Node>(dir_.path(), name, mode, seed));
    for (const auto& [f, v] : flags) nodes_.back()->SetFlag(f, v);
    nodes_.back()->Start();
    return nodes_.back().get();
  }
  void StartCluster() {
    for (int i = 1; i <= 3; ++i) ingest_.push_back(Add("ingest" + std::to_string(i), "ingest"));
    for (int i = 1; i <= 3; ++i) store_.push_back(Add("store" + std::to_string(i), "store"));
    ASSERT_TRUE(WaitFor([&] {
      for (auto& n : nodes_)
        if (n->LiveMembers() != nodes_.size()) return false;
      return true;
    }, std::chrono::seconds(20)));
  }
  void Forward(const std::string& input, std::vector<Node*> targets, int expect_rc = 0) {
    std::vector<std::string> argv = {OklogBinary(), "forward"};
    for (Node* t : targets) argv.push_back("127.0.0.1:" + std::to_string(t->fast_port()));
    Process f(argv, dir_.path(), "forward", input);
    EXPECT_EQ(f.Wait(std::chrono::seconds(120)), expect_rc) << f.Stderr();
  }
  // Waits until a query on `via` returns `n` records; returns the last body.
  Body WaitQueryable(Node* via, size_t n, std::chrono::seconds timeout = std::chrono::seconds(60)) {
    Body b;
    WaitFor([&] {
      b = ParseBody(via->Get("/store/query").body);
      return b.ulids.size() >= n;
    }, timeout);
    return b;
  }

  // Per record (ULID), how many of these stores hold it (their node-local /store/_query).
  // *held (when given): how many records each store holds.
  std::map<std::string, int> CopiesOn(const std::vector<Node*>& stores, std::vector<size_t>* held = nullptr) {
    std::map<std::string, int> copies;
    if (held) held->clear();
    for (Node* s : stores) {
      Body b = ParseBody(s->Get("/store/_query").body);
      if (held) held->push_back(b.ulids.size());
      for (const std::string& u : b.ulids) copies[u]++;
    }
    return copies;
  }
  // Short placement buckets and settle, so that moves and drops of copies happen within a test.
  const std::vector<std::pair<std::string, std::string>> kShortBuckets = {
      {"-store.placement-bucket", "100ms"}, {"-store.rebalance-settle", "1s"}, {"-store.repair-delay", "3s"}};

  TempDir dir_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<Node*> ingest_, store_;
};

}  // namespace oklog
