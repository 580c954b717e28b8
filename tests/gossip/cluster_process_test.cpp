// Five real `oklog ingeststore` processes on loopback, each given only the first as seed:
// all see five alive on GET /cluster; kill -9 of one is seen dead by all others; SIGTERM of
// one is `left` everywhere; a restarted node is alive again. Uses the node's gossip flags
// (src/node.cpp); the CMake option OKLOG_GOSSIP_PROCESS_TEST turns it off.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

namespace {

// A blocking HTTP/1.0 GET on 127.0.0.1; "" on any failure. Bounded by a 2 s socket timeout.
std::string HttpGet(uint16_t port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    close(fd);
    return "";
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return "";
  }
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  auto body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

// The state of member `name` in a /cluster body, or "" when absent. The body's members are
// objects starting with {"name":NAME, and holding "state":STATE.
std::string StateIn(const std::string& json, const std::string& name) {
  auto p = json.find("{\"name\":\"" + name + "\"");
  if (p == std::string::npos) return "";
  auto s = json.find("\"state\":\"", p);
  if (s == std::string::npos) return "";
  s += 9;
  return json.substr(s, json.find('"', s) - s);
}

struct Node {
  std::string dir;
  uint16_t api = 0, cluster = 0;  // as the node reported them (-ports.file)
  pid_t pid = -1;
  std::string seed;  // default: the first node's cluster address
  std::string name() const { return "127.0.0.1:" + std::to_string(cluster); }
};

class ClusterProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("OKLOG_BINARY");
    ASSERT_NE(bin, nullptr);
    binary_ = bin;
    root_ = std::filesystem::temp_directory_path() / ("oklog-gossip-" + std::to_string(getpid()));
    std::filesystem::create_directories(root_);
    for (int i = 0; i < 5; ++i) {
      Node n{(root_ / std::to_string(i)).string()};
      std::filesystem::create_directories(n.dir);
      nodes_.push_back(n);
    }
  }
  void TearDown() override {
    for (Node& n : nodes_) Stop(n, SIGKILL);
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }

  // Starts the node and waits for the ports it reports. Every listener takes port 0 but the
  // cluster port of a restart: that is the node's gossip name, and the test expects the same
  // member back. The first node starts without a seed: its own port is not known before it starts
  // (so it runs the standalone consumer; this test looks at membership only).
  void Start(Node& n) {
    const std::string ports_file = n.dir + "/ports";
    std::filesystem::remove(ports_file);
    std::vector<std::string> args = {binary_,
                                     "ingeststore",
                                     "-api", "127.0.0.1:0",
                                     "-ingest.fast", "127.0.0.1:0",
                                     "-ingest.durable", "127.0.0.1:0",
                                     "-ingest.bulk", "127.0.0.1:0",
                                     "-cluster", "127.0.0.1:" + std::to_string(n.cluster),
                                     "-cluster.preset", "local",
                                     "-ports.file", ports_file,
                                     "-ingest.path", n.dir + "/ingest",
                                     "-store.path", n.dir + "/store"};
    if (&n != &nodes_[0] || !n.seed.empty())
      args.insert(args.end(), {"-peer", n.seed.empty() ? nodes_[0].name() : n.seed});
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    n.pid = pid;
    auto ports = oklog::WaitForPorts(ports_file, [&] {
      if (waitpid(n.pid, nullptr, WNOHANG) != n.pid) return true;
      n.pid = -1;  // exited (and reaped)
      return false;
    });
    ASSERT_GT(n.pid, 0) << "node " << n.dir << " exited";
    ASSERT_NE(ports["api"], 0) << oklog::ReadFile(ports_file);
    ASSERT_NE(ports["cluster"], 0) << oklog::ReadFile(ports_file);
    n.api = ports["api"];
    n.cluster = ports["cluster"];
  }

  void Stop(Node& n, int sig) {
    if (n.pid <= 0) return;
    kill(n.pid, sig);
    for (int i = 0; i < 100; ++i) {  // at most 10 s, then SIGKILL
      if (waitpid(n.pid, nullptr, WNOHANG) == n.pid) {
        n.pid = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    kill(n.pid, SIGKILL);
    waitpid(n.pid, nullptr, 0);
    n.pid = -1;
  }

  bool Eventually(const std::function<bool()>& pred, int seconds) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < end) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return pred();
  }

  // Every running node other than `subject` reports it in `state`.
  bool AllSee(const Node& subject, const std::string& state) {
    for (const Node& n : nodes_) {
      if (n.pid <= 0 || &n == &subject) continue;
      if (StateIn(HttpGet(n.api, "/cluster"), subject.name()) != state) return false;
    }
    return true;
  }

  std::string binary_;
  std::filesystem::path root_;
  std::vector<Node> nodes_;
};

TEST_F(ClusterProcessTest, FiveNodesJoinCrashLeaveAndRestart) {
  for (Node& n : nodes_) Start(n);
  ASSERT_TRUE(Eventually([&] {
    for (const Node& s : nodes_)
      if (!AllSee(s, "alive")) return false;
    return true;
  }, 20)) << HttpGet(nodes_[1].api, "/cluster");

  Stop(nodes_[4], SIGKILL);
  ASSERT_TRUE(Eventually([&] { return AllSee(nodes_[4], "dead"); }, 30)) << HttpGet(nodes_[1].api, "/cluster");

  Stop(nodes_[3], SIGTERM);
  ASSERT_TRUE(Eventually([&] { return AllSee(nodes_[3], "left"); }, 15)) << HttpGet(nodes_[1].api, "/cluster");

  Start(nodes_[4]);
  ASSERT_TRUE(Eventually([&] { return AllSee(nodes_[4], "alive"); }, 20)) << HttpGet(nodes_[1].api, "/cluster");
}

// Seeds may be names: the node resolves them before each push/pull over the cluster RPC (whose
// client dials IP literals only), so a node given "localhost:PORT" joins.
TEST_F(ClusterProcessTest, SeedGivenAsANameJoins) {
  Start(nodes_[0]);
  nodes_[1].seed = "localhost:" + std::to_string(nodes_[0].cluster);
  Start(nodes_[1]);
  ASSERT_TRUE(Eventually([&] { return AllSee(nodes_[0], "alive") && AllSee(nodes_[1], "alive"); }, 20))
      << HttpGet(nodes_[1].api, "/cluster");
}

}  // namespace
