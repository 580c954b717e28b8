// common/memory_budget.h: the node-wide bound on buffered work.
#include "common/memory_budget.h"

#include <gtest/gtest.h>

#include "common/metrics.h"
#include "test_util.h"

namespace oklog {
namespace {

TEST(MemoryBudgetTest, TryChargeRefusesWhatWouldPassTheLimitAndCountsIt) {
  Registry m;
  MemoryBudget b(1000, &m);
  EXPECT_TRUE(b.TryCharge(600, MemoryBudget::Use::kBulkFrame));
  EXPECT_FALSE(b.TryCharge(401, MemoryBudget::Use::kBulkFrame));
  EXPECT_TRUE(b.TryCharge(400, MemoryBudget::Use::kRpcFrame));
  EXPECT_EQ(b.used(), 1000u);
  b.Release(1000);
  EXPECT_EQ(b.used(), 0u);
  EXPECT_EQ(SeriesValue(m.Render(), "oklog_memory_refused_total{use=\"bulk_frame\"}"), 1);
  EXPECT_EQ(SeriesValue(m.Render(), "oklog_memory_budget_bytes"), 1000);
}

TEST(MemoryBudgetTest, NewWorkIsRefusedFromFifteenSixteenthsSoWorkUnderWayCanFinish) {
  Registry m;
  MemoryBudget b(1600, &m);
  b.Charge(1499);
  EXPECT_TRUE(b.Admit(MemoryBudget::Use::kHttp));
  b.Charge(1);  // 1500 = 15/16
  EXPECT_FALSE(b.Admit(MemoryBudget::Use::kHttp));
  EXPECT_TRUE(b.TryCharge(100, MemoryBudget::Use::kHttp)) << "work under way may use the last sixteenth";
  EXPECT_EQ(SeriesValue(m.Render(), "oklog_memory_refused_total{use=\"http\"}"), 1);
  EXPECT_EQ(SeriesValue(m.Render(), "oklog_memory_used_bytes"), 1600);
  b.Release(1600);
}

TEST(MemoryBudgetTest, AChargeFollowsItsOwnersBufferAndIsReleasedWhenDestroyed) {
  MemoryBudget b(100, nullptr);
  {
    MemoryCharge c(&b);
    EXPECT_TRUE(c.TrySet(80, MemoryBudget::Use::kStream));
    EXPECT_FALSE(c.TrySet(101, MemoryBudget::Use::kStream));
    EXPECT_EQ(c.bytes(), 80u) << "a refused growth changed nothing";
    EXPECT_TRUE(c.TrySet(10, MemoryBudget::Use::kStream));  // shrinking always works
    EXPECT_EQ(b.used(), 10u);
  }
  EXPECT_EQ(b.used(), 0u);
  MemoryCharge none;  // no budget: no bound
  EXPECT_TRUE(none.TrySet(1ull << 40, MemoryBudget::Use::kStream));
}

}  // namespace
}  // namespace oklog
