// Redline for VS Code: a thin client. It starts the Python language server, shows its status and a
// retraining's progress, and offers pause / resume, retraining and the data commands (statistics,
// export, forget, the data folder), which run Redline's CLI with the server's Python. The server does
// everything else (the language client registers the inline completion provider itself when the
// server announces one).

import * as vscode from 'vscode';
import { Cli, CliError } from './cli';
import { ServerSession, message } from './client';
import { DataCommands, STATS_SCHEME, StatisticsDocument } from './commands';
import { CLIENT_COMMANDS, CMD_PAUSE, CMD_RESUME, RESTART_SETTINGS, SETTINGS_SECTION } from './protocol';
import { StatusBar } from './status';
import { TrainingProgress } from './training';

let session: ServerSession | undefined;
const RESTART_DELAY_MS = 1000;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    const output = vscode.window.createOutputChannel('Redline', { log: true });
    const status = new StatusBar(CLIENT_COMMANDS.togglePause, CLIENT_COMMANDS.showOutput);
    const current = new ServerSession(context.extensionPath, output, status);
    session = current;
    const training = new TrainingProgress(status, current, output);
    current.onWorkDone = (value) => training.onWorkDone(value);
    const statsDoc = new StatisticsDocument();
    const data = new DataCommands(new Cli(context.extensionPath, output), current, status, training, statsDoc);
    context.subscriptions.push(output, status, current, training, statsDoc);

    let restartTimer: NodeJS.Timeout | undefined;
    const run = (command: string) => async () => {
        try {
            const payload = await current.execute(command);
            if (payload) {
                status.show(payload);
            }
        } catch (err) {
            void vscode.window.showWarningMessage(`Redline: ${message(err)}`);
        }
    };
    context.subscriptions.push(
        vscode.commands.registerCommand(CLIENT_COMMANDS.pause, run(CMD_PAUSE)),
        vscode.commands.registerCommand(CLIENT_COMMANDS.resume, run(CMD_RESUME)),
        vscode.commands.registerCommand(CLIENT_COMMANDS.togglePause, () =>
            run(status.state === 'paused' ? CMD_RESUME : CMD_PAUSE)(),
        ),
        vscode.commands.registerCommand(CLIENT_COMMANDS.showOutput, () => output.show(true)),
        vscode.commands.registerCommand(CLIENT_COMMANDS.restart, () => current.restart()),
        vscode.commands.registerCommand(CLIENT_COMMANDS.retrain, guard(() => data.retrain())),
        vscode.commands.registerCommand(CLIENT_COMMANDS.cancelRetrain, guard(() => data.cancelRetrain())),
        vscode.commands.registerCommand(CLIENT_COMMANDS.showStatistics, guard(() => data.showStatistics())),
        vscode.commands.registerCommand(CLIENT_COMMANDS.forget, guard(() => data.forget())),
        vscode.commands.registerCommand(CLIENT_COMMANDS.openDataFolder, guard(() => data.openDataFolder())),
        vscode.commands.registerCommand(CLIENT_COMMANDS.exportEdits, guard(() => data.exportEdits())),
        vscode.workspace.registerTextDocumentContentProvider(STATS_SCHEME, statsDoc),
        // The other settings reach the running server through didChangeConfiguration; pythonPath and
        // languages shape the process or its document selector, and the server reads the capture
        // settings only when it starts, so those need a new one.
        // A short delay lets the language client send its own didChangeConfiguration first, and turns a
        // burst of changes (a number typed into the Settings editor) into one restart.
        vscode.workspace.onDidChangeConfiguration((event) => {
            const restartFor = ['pythonPath', 'languages', ...RESTART_SETTINGS];
            if (restartFor.some((key) => event.affectsConfiguration(`${SETTINGS_SECTION}.${key}`))) {
                clearTimeout(restartTimer);
                restartTimer = setTimeout(() => void current.restart(), RESTART_DELAY_MS);
            }
        }),
        { dispose: () => clearTimeout(restartTimer) },
    );

    await current.start();
}

/** Run a command; what goes wrong becomes an error message instead of an unhandled rejection. */
function guard(task: () => Promise<void>): () => Promise<void> {
    return async () => {
        try {
            await task();
        } catch (err) {
            const text = err instanceof CliError ? err.message : message(err);
            void vscode.window.showErrorMessage(`Redline: ${text}`);
        }
    };
}

export function deactivate(): Thenable<void> | undefined {
    const current = session;
    session = undefined;
    return current?.stop();
}
