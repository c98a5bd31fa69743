// Which Python runs the server: the first of the `redline.pythonPath` setting, $REDLINE_PYTHON, the
// interpreter recorded at build time in redline.json beside the extension's package.json, python3.

import * as fs from 'node:fs';
import * as path from 'node:path';

export interface PythonChoice {
    command: string;
    /** Where the choice came from, for the output channel. */
    source: string;
}

export function resolvePython(
    setting: string | undefined,
    env: NodeJS.ProcessEnv,
    extensionPath: string,
): PythonChoice {
    if (setting && setting.trim()) {
        return { command: setting.trim(), source: 'setting redline.pythonPath' };
    }
    const fromEnv = env.REDLINE_PYTHON;
    if (fromEnv && fromEnv.trim()) {
        return { command: fromEnv.trim(), source: 'environment REDLINE_PYTHON' };
    }
    const recorded = readRecorded(path.join(extensionPath, 'redline.json'));
    if (recorded) {
        return { command: recorded, source: 'redline.json' };
    }
    return { command: 'python3', source: 'default' };
}

function readRecorded(file: string): string | undefined {
    let text: string;
    try {
        text = fs.readFileSync(file, 'utf8');
    } catch {
        return undefined; // absent: a build without a recorded interpreter
    }
    try {
        const value = (JSON.parse(text) as { pythonPath?: unknown }).pythonPath;
        return typeof value === 'string' && value.trim() ? value.trim() : undefined;
    } catch {
        return undefined;
    }
}
