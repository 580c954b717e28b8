// The example config files of config/, run as a user runs them: the real `oklog` with
// `-config config/X.conf`, the mode named on the file's "Run:" line. Only the listen addresses
// and data directories are replaced, by flags after -config (the command line wins over the
// file), so the tests use ports the nodes pick (port 0, read back from -ports.file) and temp
// directories; every other value comes from the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>

#include "common/http_client.h"
#include "test_util.h"

namespace oklog {
namespace {

namespace fs = std::filesystem;

std::string ConfigDir() {
  const char* src = std::getenv("OKLOG_SOURCE_DIR");
  return std::string(src ? src : OKLOG_SOURCE_DIR_DEFAULT) + "/config";
}

// The mode on the file's "oklog MODE -config config/NAME" line.
std::string ModeOf(const std::string& name) {
  std::string text = ReadFile(ConfigDir() + "/" + name);
  std::smatch m;
  std::regex run("oklog (ingeststore|ingest|store) -config config/" + name);
  if (!std::regex_search(text, m, run)) return "";
  return m[1];
}

// Writes the bytes to 127.0.0.1:port and closes: the fast port never answers.
bool Send(uint16_t port, const std::string& bytes) {
  int fd = ConnectLoopback(port);
  if (fd < 0) return false;
  bool ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  ::close(fd);
  return ok;
}

class ConfigNode {
 public:
  ConfigNode(const std::string& config, const std::string& dir, std::vector<std::string> extra = {})
      : name_(fs::path(config).stem().string()), dir_(dir), ports_file_(dir + "/" + name_ + ".ports") {
    std::string mode = ModeOf(config);
    EXPECT_FALSE(mode.empty()) << config << " has no \"oklog MODE -config config/" << config << "\" line";
    const std::string any = "127.0.0.1:0";
    args_ = {OklogBinary(), mode, "-config", ConfigDir() + "/" + config,
             "-api", any, "-ingest.fast", any, "-ingest.durable", any, "-ingest.bulk", any, "-cluster", any,
             "-ports.file", ports_file_,
             "-ingest.path", dir + "/" + name_ + "/ingest", "-store.path", dir + "/" + name_ + "/store"};
    args_.insert(args_.end(), extra.begin(), extra.end());
  }
  ~ConfigNode() {
    if (proc_ && proc_->running()) Stop();
  }
  void Start() {
    fs::remove(ports_file_);
    proc_ = std::make_unique<Process>(args_, dir_, name_);
    auto ports = WaitForPorts(ports_file_, [&] { return proc_->running(); });
    ASSERT_TRUE(proc_->running()) << name_ << " exited: " << proc_->Stderr();
    api_ = ports["api"];
    fast_ = ports["ingest.fast"];  // 0 on a store node: it has no ingest listener
    cluster_ = ports["cluster"];
    ASSERT_TRUE(api_ != 0 && cluster_ != 0) << name_ << ": " << ReadFile(ports_file_) << proc_->Stderr();
    ASSERT_TRUE(WaitFor([&] { return !proc_->running() || Get("/health").body == kHealthyUnkeyed; },
                        std::chrono::seconds(20)))
        << name_ << " did not answer /health: " << proc_->Stderr();
    ASSERT_TRUE(proc_->running()) << name_ << " exited: " << proc_->Stderr();
  }
  // SIGTERM; a clean shutdown exits 0.
  void Stop() {
    proc_->Signal(SIGTERM);
    EXPECT_EQ(proc_->Wait(std::chrono::seconds(60)), 0) << name_ << ": " << proc_->Stderr();
  }
  HttpClientResponse Get(const std::string& pq) {
    auto r = HttpFetchAll("GET", "127.0.0.1:" + std::to_string(api_) + pq);
    return r.ok() ? r.value() : HttpClientResponse{};
  }
  size_t LiveMembers() {
    std::string j = Get("/cluster").body;
    size_t n = 0;
    for (size_t p = j.find("\"state\":\"alive\""); p != std::string::npos; p = j.find("\"state\":\"alive\"", p + 1)) ++n;
    return n;
  }
  std::string cluster_addr() const { return "127.0.0.1:" + std::to_string(cluster_); }
  uint16_t fast_port() const { return fast_; }

 private:
  std::string name_, dir_, ports_file_;
  uint16_t api_ = 0, fast_ = 0, cluster_ = 0;
  std::vector<std::string> args_;
  std::unique_ptr<Process> proc_;
};

class ExampleConfigTest : public ::testing::Test {
 protected:
  TempDir tmp_;
};

TEST_F(ExampleConfigTest, EveryExampleConfigIsStartedByATestHere) {
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(ConfigDir()))
    if (e.path().extension() == ".conf") files.insert(e.path().filename().string());
  EXPECT_EQ(files, (std::set<std::string>{"single.conf", "cluster-node1.conf", "cluster-node2.conf",
                                          "cluster-node3.conf", "ingest.conf", "store.conf"}));
  for (const auto& f : files) EXPECT_FALSE(ModeOf(f).empty()) << f;
  EXPECT_TRUE(fs::is_regular_file(ConfigDir() + "/oklog.service"));
}

TEST_F(ExampleConfigTest, SingleNodeConfigStoresAndAnswersQueries) {
  ConfigNode node("single.conf", tmp_.path());
  ASSERT_NO_FATAL_FAILURE(node.Start());
  EXPECT_EQ(node.LiveMembers(), 1u);
  ASSERT_TRUE(Send(node.fast_port(), "config single marker\n"));
  EXPECT_TRUE(WaitFor([&] { return node.Get("/store/query?from=1h&q=single+marker").body.find("config single marker") !=
                                   std::string::npos; },
                      std::chrono::seconds(20)));
  node.Stop();
}

TEST_F(ExampleConfigTest, ThreeClusterNodeConfigsFormOneCluster) {
  // The files name each other's cluster ports; the ports the nodes pick replace them, so each
  // later node is also given the first one's (the file's peers stay, unanswered, as seeds).
  ConfigNode n1("cluster-node1.conf", tmp_.path());
  ASSERT_NO_FATAL_FAILURE(n1.Start());
  ConfigNode n2("cluster-node2.conf", tmp_.path(), {"-peer", n1.cluster_addr()});
  ConfigNode n3("cluster-node3.conf", tmp_.path(), {"-peer", n1.cluster_addr()});
  ASSERT_NO_FATAL_FAILURE(n2.Start());
  ASSERT_NO_FATAL_FAILURE(n3.Start());
  EXPECT_TRUE(WaitFor([&] { return n1.LiveMembers() == 3 && n2.LiveMembers() == 3 && n3.LiveMembers() == 3; },
                      std::chrono::seconds(30)))
      << n1.Get("/cluster").body;
  ASSERT_TRUE(Send(n2.fast_port(), "config cluster marker\n"));
  EXPECT_TRUE(WaitFor([&] { return n3.Get("/store/query?from=1h&q=cluster+marker").body.find("config cluster marker") !=
                                   std::string::npos; },
                      std::chrono::seconds(30)));
  n3.Stop();
  n2.Stop();
  n1.Stop();
}

TEST_F(ExampleConfigTest, SplitIngestAndStoreConfigsMoveRecordsToTheStore) {
  ConfigNode ingest("ingest.conf", tmp_.path());
  ASSERT_NO_FATAL_FAILURE(ingest.Start());
  ConfigNode store("store.conf", tmp_.path(), {"-peer", ingest.cluster_addr()});
  ASSERT_NO_FATAL_FAILURE(store.Start());
  EXPECT_TRUE(WaitFor([&] { return ingest.LiveMembers() == 2 && store.LiveMembers() == 2; }, std::chrono::seconds(30)))
      << store.Get("/cluster").body;
  ASSERT_TRUE(Send(ingest.fast_port(), "config split marker\n"));
  EXPECT_TRUE(WaitFor([&] { return store.Get("/store/query?from=1h&q=split+marker").body.find("config split marker") !=
                                   std::string::npos; },
                      std::chrono::seconds(30)));
  ingest.Stop();  // the ingest node first: on SIGTERM it hands what is left to the live store
  store.Stop();
}

}  // namespace
}  // namespace oklog
