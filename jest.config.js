// JavaScript, not TypeScript: a jest.config.ts would need ts-node just to be read.
/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  testTimeout: 120_000,
  // Mount tests spawn the built daemon (dist/); unit tests import src/ through ts-jest, which only
  // transpiles (`npm run typecheck` type-checks the tests).
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: { isolatedModules: true } }] },
};
