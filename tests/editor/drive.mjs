// Drives a running code-server in Debian's Chromium, as a person would: open each file, type at its
// end, wait for Redline's ghost text, accept it with Tab, save with Ctrl+S; then run "Redline: Show
// statistics" from the command palette and read the document it opens.
//
//   node drive.mjs '<json>'    (node 24 from .tools/bin/node24, or any node >= 18)
//
// The JSON argument: {url, workspace, tools, profileDir, screenshotDir,
//                     files: [{name, typed, timeoutMs}], saveTimeoutMs, statistics?: {timeoutMs}}
// Prints one JSON report on stdout's last line: {ok, files: [{name, ghostMs, ghost, saved}],
// statusText, statistics?: {text, accepted, shown}, error?, screenshot?}. Exit status 0 when every
// file got a ghost, accepted and saved, and the statistics showed an accepted suggestion; 1 otherwise.

import { createRequire } from 'node:module';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

const args = JSON.parse(process.argv[2]);
const require = createRequire(path.join(args.tools, 'playwright', 'package.json'));
const { chromium } = require('playwright-core');

// Ghost text: inline on the cursor's line, or a view zone for further lines.
const GHOST = '.ghost-text-decoration, .ghost-text-decoration-preview, .ghost-text';
// The status bar item once the server has announced itself (see extension/src/status.ts).
const READY = '.statusbar-item[aria-label="Redline ready"], .statusbar-item[aria-label="Redline thinking"]';
const started = Date.now();
const log = (...parts) => console.error(`[drive ${((Date.now() - started) / 1000).toFixed(1)}s]`, ...parts);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The file's text once it differs from `before` (what was on disk before the save). */
async function waitForSaved(file, before, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
        const text = await readFile(file, 'utf8');
        if (text !== before) {
            return text;
        }
        await sleep(200);
    }
    throw new Error(`${file} was not saved within ${timeoutMs} ms`);
}

async function openFile(page, name) {
    await page.keyboard.press('Control+P');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor({ state: 'visible', timeout: 15_000 });
    await input.fill(name);
    // The file search runs in the background: wait until the first row names our file.
    await page
        .locator('.quick-input-list .monaco-list-row', { hasText: name })
        .first()
        .waitFor({ state: 'visible', timeout: 15_000 });
    await page.keyboard.press('Enter');
    await page.locator(`.tab.active[data-resource-name="${name}"]`).waitFor({ timeout: 15_000 });
    const editor = page.locator('.editor-group-container.active .monaco-editor .view-lines').first();
    await editor.waitFor({ state: 'visible', timeout: 15_000 });
    await editor.click();
    await page.keyboard.press('Control+End');
}

/** Run a command by its palette title: F1, type, Enter. */
async function runCommand(page, title) {
    await page.keyboard.press('F1');
    const input = page.locator('.quick-input-widget input');
    await input.waitFor({ state: 'visible', timeout: 15_000 });
    await input.fill(`>${title}`);
    await page
        .locator('.quick-input-list .monaco-list-row', { hasText: title })
        .first()
        .waitFor({ state: 'visible', timeout: 15_000 });
    await page.keyboard.press('Enter');
}

/**
 * "Redline: Show statistics", then the text of the document it opens (the lines on screen). The accept
 * command travels asynchronously, so it asks again (a few times) until an acceptance shows.
 */
async function readStatistics(page, timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let last = null;
    for (let attempt = 1; ; attempt++) {
        await runCommand(page, 'Redline: Show statistics');
        await page
            .locator('.tab.active', { hasText: 'Redline statistics' })
            .waitFor({ state: 'visible', timeout: Math.max(5_000, deadline - Date.now()) });
        const lines = page.locator('.editor-group-container.active .monaco-editor .view-lines').first();
        // The document's text is replaced in place when the command runs again: wait for its summary.
        let text = '';
        while (Date.now() < deadline) {
            text = ((await lines.innerText()) ?? '').replace(/\u00a0/g, ' ');
            if (/Accepted suggestions: \d+ of \d+/.test(text)) {
                break;
            }
            await sleep(250);
        }
        const m = /Accepted suggestions: (\d+) of (\d+)/.exec(text);
        last = { text, accepted: m ? Number(m[1]) : null, shown: m ? Number(m[2]) : null, attempts: attempt };
        log(`statistics (attempt ${attempt}): ${m ? m[0] : JSON.stringify(text.slice(0, 200))}`);
        if ((last.accepted ?? 0) >= 1 || Date.now() + 3_000 > deadline) {
            return last;
        }
        await sleep(2_000);
    }
}

async function main() {
    const report = { ok: false, files: [] };
    const context = await chromium.launchPersistentContext(args.profileDir, {
        executablePath: '/usr/bin/chromium',
        headless: true,
        viewport: { width: 1400, height: 900 },
        args: [
            '--no-sandbox',
            '--disable-gpu',
            '--disable-quic',
            '--no-first-run',
            '--disable-background-networking',
            '--disable-component-update',
            '--disable-sync',
        ],
    });
    const page = context.pages()[0] ?? (await context.newPage());
    try {
        const url = `${args.url}/?folder=${encodeURIComponent(args.workspace)}`;
        log('open', url);
        await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60_000 });
        await page.locator('.monaco-workbench').waitFor({ state: 'visible', timeout: 60_000 });
        // The explorer lists the workspace once the workbench has connected to the server side.
        await page.locator('.explorer-folders-view .monaco-list-row').first().waitFor({ timeout: 60_000 });
        log('workbench ready');

        for (const spec of args.files) {
            const file = path.join(args.workspace, spec.name);
            const before = await readFile(file, 'utf8');
            await openFile(page, spec.name);
            // The inline provider exists once the server has initialized; what is typed before that
            // asks nobody. The status bar says so when the server reports itself ready.
            await page.locator(READY).first().waitFor({ state: 'visible', timeout: spec.timeoutMs });
            log(`typing in ${spec.name}`);
            const typedAt = Date.now();
            await page.keyboard.type(spec.typed, { delay: 30 });
            const ghost = page.locator(GHOST).first();
            await ghost.waitFor({ state: 'visible', timeout: spec.timeoutMs });
            const ghostMs = Date.now() - typedAt;
            const ghostText = await ghost.textContent();
            log(`ghost in ${spec.name} after ${ghostMs} ms: ${JSON.stringify(ghostText)}`);
            await page.keyboard.press('Tab');
            await sleep(300); // let the accept command leave before the save
            await page.keyboard.press('Control+S');
            const saved = await waitForSaved(file, before, args.saveTimeoutMs ?? 10_000);
            log(`saved ${spec.name}: ${JSON.stringify(saved.slice(before.length))}`);
            report.files.push({ name: spec.name, ghostMs, ghost: ghostText, saved });
        }
        const status = page.locator('.statusbar-item', { hasText: 'Redline' }).first();
        report.status = (await status.count()) ? await status.getAttribute('aria-label') : null;
        report.statusText = (await status.count()) ? (await status.innerText()).trim() : null;
        if (args.statistics) {
            report.statistics = await readStatistics(page, args.statistics.timeoutMs ?? 60_000);
            if (args.screenshotDir) {
                report.statistics.screenshot = path.join(args.screenshotDir, 'statistics.png');
                await page.screenshot({ path: report.statistics.screenshot }).catch((e) => log('no screenshot:', e));
            }
            if ((report.statistics.accepted ?? 0) < 1) {
                throw new Error(`the statistics show no accepted suggestion: ${report.statistics.text.slice(0, 500)}`);
            }
        }
        report.ok = true;
    } catch (err) {
        report.error = String(err?.stack ?? err);
        if (args.screenshotDir) {
            report.screenshot = path.join(args.screenshotDir, 'editor-failure.png');
            await page.screenshot({ path: report.screenshot }).catch((e) => log('no screenshot:', e));
        }
    } finally {
        await context.close().catch(() => {});
    }
    console.log(JSON.stringify(report));
    process.exitCode = report.ok ? 0 : 1;
}

await main();
