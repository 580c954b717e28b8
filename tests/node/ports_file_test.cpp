// The -ports.file: the addresses a node bound, written so that a reader sees all of it or none.
#include "node/ports_file.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "test_util.h"

namespace oklog {
namespace {

TEST(PortsFileTest, OneNameEqualsHostPortLineEachInOrder) {
  EXPECT_EQ(FormatPorts({{"api", "127.0.0.1:4001"}, {"cluster", "[::1]:4002"}}),
            "api=127.0.0.1:4001\ncluster=[::1]:4002\n");
  EXPECT_EQ(FormatPorts({}), "");
}

TEST(PortsFileTest, WriteReplacesTheFileWholeAndLeavesNoTemporary) {
  TempDir dir;
  const std::string path = dir.path() + "/ports";
  WriteFile(path, "api=127.0.0.1:1\nstale=127.0.0.1:2\n");
  ASSERT_TRUE(WritePortsFile(path, {{"api", "0.0.0.0:5000"}}).ok());
  EXPECT_EQ(ReadFile(path), "api=0.0.0.0:5000\n");
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(ReadPortsFile(path), (std::map<std::string, uint16_t>{{"api", 5000}}));
}

TEST(PortsFileTest, UnwritableDirectoryIsAnIOErrorNamingThePath) {
  Status s = WritePortsFile("/nonexistent/dir/ports", {{"api", "127.0.0.1:1"}});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kIOError) << s.ToString();
  EXPECT_NE(s.message().find("/nonexistent/dir/ports"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace oklog
