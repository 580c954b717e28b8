#include "common/duration.h"

#include <gtest/gtest.h>

#include <limits>

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

// Found by tests/fuzz/fuzz_duration: "%g" kept six digits ("1.23457ms" for 1234567ns), "%.9g"
// nine (hours of nanoseconds lost their tail), and the long double total passed through a double.
TEST(DurationTest, FormatIsExactAndParsesBack) {
  EXPECT_EQ(FormatDuration(Nanos(1234567)), "1.234567ms");
  EXPECT_EQ(FormatDuration(Nanos(1500)), "1.5\xC2\xB5s");
  EXPECT_EQ(FormatDuration(Nanos(1000000001)), "1.000000001s");
  EXPECT_EQ(FormatDuration(Nanos(4326323376881666688)), "1201756h29m36.881666688s");
  for (int64_t ns : {int64_t{1}, int64_t{999}, int64_t{1234567}, int64_t{59999999999}, int64_t{4326323376881666688},
                     std::numeric_limits<int64_t>::max(), -int64_t{1500}, std::numeric_limits<int64_t>::min()}) {
    auto back = ParseDuration(FormatDuration(Nanos(ns)));
    ASSERT_TRUE(back.ok()) << ns << " " << FormatDuration(Nanos(ns));
    EXPECT_EQ(back->count(), ns) << FormatDuration(Nanos(ns));
  }
}

// -INT64_MIN overflowed (undefined behaviour, UBSan in the fuzz target); Go prints it.
TEST(DurationTest, FormatsTheMostNegativeDuration) {
  EXPECT_EQ(FormatDuration(Nanos(std::numeric_limits<int64_t>::min())), "-2562047h47m16.854775808s");
}

// As Go: the whole int64 range parses, one nanosecond more does not.
TEST(DurationTest, ParsesUpToTheInt64Limits) {
  EXPECT_EQ(ParseDuration("2562047h47m16.854775807s")->count(), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(ParseDuration("-2562047h47m16.854775808s")->count(), std::numeric_limits<int64_t>::min());
  EXPECT_FALSE(ParseDuration("2562047h47m16.854775808s").ok());
  EXPECT_FALSE(ParseDuration("9223372036854775808ns").ok());
  EXPECT_EQ(ParseDuration("1.000000001s")->count(), 1000000001);
}

}  // namespace
}  // namespace oklog
