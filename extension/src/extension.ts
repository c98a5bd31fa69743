// Redline for VS Code: a thin client. It starts the Python language server, shows its status, and
// offers pause / resume; the server does everything else (the language client registers the inline
// completion provider itself when the server announces one).

import * as vscode from 'vscode';
import { ServerSession, message } from './client';
import { CLIENT_COMMANDS, CMD_PAUSE, CMD_RESUME, SETTINGS_SECTION } from './protocol';
import { StatusBar } from './status';

let session: ServerSession | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    const output = vscode.window.createOutputChannel('Redline', { log: true });
    const status = new StatusBar(CLIENT_COMMANDS.togglePause, CLIENT_COMMANDS.showOutput);
    const current = new ServerSession(context.extensionPath, output, status);
    session = current;
    context.subscriptions.push(output, status, current);

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
        // The other settings reach the running server through didChangeConfiguration; these two shape
        // the process or its document selector, so they need a new one.
        vscode.workspace.onDidChangeConfiguration((event) => {
            if (
                event.affectsConfiguration(`${SETTINGS_SECTION}.pythonPath`) ||
                event.affectsConfiguration(`${SETTINGS_SECTION}.languages`)
            ) {
                void current.restart();
            }
        }),
    );

    await current.start();
}

export function deactivate(): Thenable<void> | undefined {
    const current = session;
    session = undefined;
    return current?.stop();
}
