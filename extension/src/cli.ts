// Running Redline's command line with the same Python and environment as the server:
// `<python> -m server <subcommand>` (stats, export, forget), and the data folder from the server's own
// `server.paths`. Nothing here knows how Redline stores anything: the CLI does the work.

import { execFile } from 'node:child_process';
import * as vscode from 'vscode';
import { SETTINGS_SECTION } from './protocol';
import { resolvePython, type PythonChoice } from './python';

export interface CliResult {
    stdout: string;
    stderr: string;
}

export class CliError extends Error {
    constructor(
        message: string,
        readonly stderr: string,
        readonly code: number | string | null,
    ) {
        super(message);
    }
}

export class Cli {
    constructor(
        private readonly extensionPath: string,
        private readonly output: vscode.LogOutputChannel,
    ) {}

    python(): PythonChoice {
        return resolvePython(
            vscode.workspace.getConfiguration(SETTINGS_SECTION).get<string>('pythonPath'),
            process.env,
            this.extensionPath,
        );
    }

    /** `<python> -m server <args>`; rejects with a CliError (its stderr's last line as the message). */
    server(args: string[], timeoutMs = 120_000): Promise<CliResult> {
        return this.run(['-m', 'server', ...args], timeoutMs);
    }

    /** The data folder ($REDLINE_HOME or the platform's user data folder), as the server computes it. */
    async dataHome(): Promise<string> {
        const { stdout } = await this.run(['-c', 'from server import paths; print(paths.data_home())'], 30_000);
        const dir = stdout.trim().split(/\r?\n/).pop() ?? '';
        if (!dir) {
            throw new CliError('the server printed no data folder', '', 0);
        }
        return dir;
    }

    private run(args: string[], timeoutMs: number): Promise<CliResult> {
        const python = this.python();
        const shown = `${python.command} ${args.map(quote).join(' ')}`;
        this.output.info(`Running ${shown}`);
        return new Promise((resolve, reject) => {
            execFile(
                python.command,
                args,
                {
                    // As for the server: the extension's folder has no `server` package to shadow the
                    // installed one, and the environment (REDLINE_HOME included) passes through.
                    cwd: this.extensionPath,
                    env: process.env,
                    timeout: timeoutMs,
                    maxBuffer: 32 * 1024 * 1024,
                    windowsHide: true,
                },
                (err, stdout, stderr) => {
                    const out = String(stdout);
                    const errText = String(stderr);
                    if (errText.trim()) {
                        this.output.info(`${shown}: ${errText.trim()}`);
                    }
                    if (!err) {
                        resolve({ stdout: out, stderr: errText });
                        return;
                    }
                    const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: number | string | null };
                    let text: string;
                    if (e.code === 'ENOENT') {
                        text = `cannot run ${python.command} (${python.source}): set redline.pythonPath`;
                    } else if (e.killed) {
                        text = `${shown} took longer than ${Math.round(timeoutMs / 1000)} s and was stopped`;
                    } else {
                        text = lastLine(errText) || lastLine(out) || e.message;
                    }
                    this.output.error(`${shown} failed: ${text}`);
                    reject(new CliError(text, errText, e.code ?? null));
                },
            );
        });
    }
}

function lastLine(text: string): string {
    const lines = text
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter(Boolean);
    return lines[lines.length - 1] ?? '';
}

function quote(arg: string): string {
    return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
