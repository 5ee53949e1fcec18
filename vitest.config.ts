import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Multi-process tests start many agents; running files one at a time keeps two cores sane.
    fileParallelism: false,
    reporters: ['default']
  }
})
