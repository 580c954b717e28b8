// common/log.h: LogLimiter, one report per period with the count of what it held back.
#include "common/log.h"

#include <gtest/gtest.h>

#include <thread>

namespace oklog {
namespace {

TEST(LogLimiterTest, OneReportPerPeriodAndTheNextSaysHowManyWereHeldBack) {
  LogLimiter limit(std::chrono::milliseconds(200));
  uint64_t n = 99;
  EXPECT_TRUE(limit.Allow(&n));
  EXPECT_EQ(n, 0u);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(limit.Allow(&n));
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  EXPECT_TRUE(limit.Allow(&n));
  EXPECT_EQ(n, 5u);
  EXPECT_FALSE(limit.Allow());
}

}  // namespace
}  // namespace oklog
