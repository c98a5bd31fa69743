// Bundles the extension and vscode-languageclient into one CommonJS file, dist/extension.js.
// `node esbuild.mjs --watch` rebuilds on change.
import * as esbuild from 'esbuild';

const options = {
    entryPoints: ['src/extension.ts'],
    bundle: true,
    outfile: 'dist/extension.js',
    format: 'cjs',
    platform: 'node',
    target: 'node20', // VS Code 1.91's Electron runs node 20
    external: ['vscode'],
    sourcemap: false,
    minify: false,
    logLevel: 'info',
};

if (process.argv.includes('--watch')) {
    const context = await esbuild.context(options);
    await context.watch();
} else {
    await esbuild.build(options);
}
