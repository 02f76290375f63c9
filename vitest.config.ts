import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // SQLite files and PostgreSQL schemas are per test file, so files can run in parallel.
    fileParallelism: true,
    pool: "forks"
  }
})
