// npm runs a root package's binding.gyp on install unless an install script exists; the addon is
// built by scripts/setup.d instead (after the system packages), so this step only says so.
console.log('[isgfs] native addon is built by `npm run setup`');
