#include "common/duration.h"

#include <gtest/gtest.h>

namespace oklog {
namespace {

TEST(DurationTest, ParsesGoForms) {
  EXPECT_EQ(ParseDuration("3s").value(), std::chrono::seconds(3));
  EXPECT_EQ(ParseDuration("100ms").value(), std::chrono::milliseconds(100));
  EXPECT_EQ(ParseDuration("168h").value(), std::chrono::hours(168));
  EXPECT_EQ(ParseDuration("1h30m").value(), std::chrono::minutes(90));
  EXPECT_EQ(ParseDuration("1.5s").value(), std::chrono::milliseconds(1500));
  EXPECT_EQ(ParseDuration("-5m").value(), -std::chrono::minutes(5));
  EXPECT_EQ(ParseDuration("0").value(), Nanos(0));
  EXPECT_EQ(ParseDuration("250us").value(), std::chrono::microseconds(250));
}

TEST(DurationTest, RejectsGarbage) {
  for (const char* s : {"", "5", "s", "5x", "1h-3m", "--1s", "1e3s", "9999999999999h"}) {
    EXPECT_FALSE(ParseDuration(s).ok()) << s;
  }
}

TEST(DurationTest, FormatsLikeGo) {
  EXPECT_EQ(FormatDuration(std::chrono::seconds(3)), "3s");
  EXPECT_EQ(FormatDuration(std::chrono::hours(168)), "168h0m0s");
  EXPECT_EQ(FormatDuration(std::chrono::milliseconds(100)), "100ms");
  EXPECT_EQ(FormatDuration(std::chrono::minutes(1)), "1m0s");
  EXPECT_EQ(FormatDuration(Nanos(0)), "0s");
}

}  // namespace
}  // namespace oklog
