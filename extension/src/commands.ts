// The extension's data commands: statistics, forgetting, export, the data folder, retraining. Each one
// asks the server (LSP commands) or runs Redline's CLI with the server's Python; none of them reads or
// writes Redline's data itself.

import * as vscode from 'vscode';
import { type Cli, CliError } from './cli';
import { type ServerSession, message } from './client';
import { statisticsMarkdown, type Stats } from './format';
import { CMD_PAUSE, CMD_RESUME, CMD_RETRAIN, type RetrainResult } from './protocol';
import { type StatusBar } from './status';
import { type TrainingProgress } from './training';

/** Read-only documents under this scheme: not `file` or `untitled`, so the server never sees them. */
export const STATS_SCHEME = 'redline-stats';
export const STATS_URI = vscode.Uri.from({ scheme: STATS_SCHEME, path: '/Redline statistics.md' });

export class StatisticsDocument implements vscode.TextDocumentContentProvider, vscode.Disposable {
    private text = '# Redline statistics\n';
    private readonly changed = new vscode.EventEmitter<vscode.Uri>();
    readonly onDidChange = this.changed.event;

    set(text: string): void {
        this.text = text;
        this.changed.fire(STATS_URI);
    }

    provideTextDocumentContent(): string {
        return this.text;
    }

    dispose(): void {
        this.changed.dispose();
    }
}

export class DataCommands {
    constructor(
        private readonly cli: Cli,
        private readonly session: ServerSession,
        private readonly status: StatusBar,
        private readonly training: TrainingProgress,
        private readonly statsDoc: StatisticsDocument,
    ) {}

    async retrain(): Promise<void> {
        let result: RetrainResult | undefined;
        try {
            result = (await this.session.command(CMD_RETRAIN)) as RetrainResult | undefined;
        } catch (err) {
            void vscode.window.showWarningMessage(`Redline: cannot retrain: ${message(err)}`);
            return;
        }
        if (!result?.started) {
            void vscode.window.showInformationMessage(`Redline: ${result?.message || 'retraining did not start.'}`);
            return;
        }
        // The server's work-done progress normally opens the notification; the status payload does it
        // too, in case that progress never arrives.
        await this.training.started();
    }

    async cancelRetrain(): Promise<void> {
        // When a run stops, the server says so itself.
        if (!(await this.training.cancel())) {
            void vscode.window.showInformationMessage('Redline: no retraining is running.');
        }
    }

    async showStatistics(): Promise<void> {
        const stats = await vscode.window.withProgress(
            { location: vscode.ProgressLocation.Window, title: 'Redline: reading statistics' },
            async () => {
                const [out] = await Promise.all([
                    this.cli.server(['stats', '--json']),
                    // The bandit's figures move with every settled edit: take the newest.
                    this.training.refresh(),
                ]);
                return JSON.parse(out.stdout) as Stats;
            },
        );
        const status = this.session.running ? this.status.payload : undefined;
        this.statsDoc.set(statisticsMarkdown(stats, status));
        const doc = await vscode.workspace.openTextDocument(STATS_URI);
        await vscode.window.showTextDocument(doc, { preview: false });
    }

    async forget(): Promise<void> {
        type Choice = vscode.QuickPickItem & { args: string[]; what: string };
        const choices: Choice[] = [
            {
                label: 'Everything',
                description: 'every suggestion and edit Redline has recorded',
                args: ['--all'],
                what: 'everything Redline has recorded',
            },
            {
                label: 'The last hour',
                description: 'suggestions made in the last 60 minutes',
                args: ['--since', '1h'],
                what: 'the suggestions and edits of the last hour',
            },
            {
                label: 'The last day',
                description: 'suggestions made in the last 24 hours',
                args: ['--since', '1d'],
                what: 'the suggestions and edits of the last 24 hours',
            },
        ];
        for (const folder of vscode.workspace.workspaceFolders ?? []) {
            if (folder.uri.scheme === 'file') {
                choices.push({
                    label: `This workspace folder: ${folder.name}`,
                    description: folder.uri.fsPath,
                    args: ['--folder', folder.uri.fsPath],
                    what: `the suggestions and edits made in ${folder.uri.fsPath}`,
                });
            }
        }
        const choice = await vscode.window.showQuickPick(choices, {
            title: 'Redline: forget my data',
            placeHolder: 'What should Redline forget?',
        });
        if (!choice) {
            return;
        }
        const confirm = 'Forget';
        const answer = await vscode.window.showWarningMessage(
            `Forget ${choice.what}?`,
            {
                modal: true,
                detail:
                    'The records are deleted from the database for good and the space is reclaimed. ' +
                    'Model versions already trained are kept.',
            },
            confirm,
        );
        if (answer !== confirm) {
            return;
        }
        // Pausing first settles the suggestions in flight, so nothing about them is written after the
        // deletion; we resume only if we paused.
        const pausedHere = this.session.running && this.status.state !== 'paused';
        if (pausedHere) {
            await this.session.execute(CMD_PAUSE).then(
                (p) => p && this.status.show(p),
                () => undefined,
            );
        }
        try {
            const out = await vscode.window.withProgress(
                { location: vscode.ProgressLocation.Notification, title: 'Redline: forgetting…' },
                () => this.cli.server(['forget', ...choice.args, '--yes'], 600_000),
            );
            void vscode.window.showInformationMessage(`Redline: ${lastLine(out.stdout) || 'done'}.`);
        } catch (err) {
            void vscode.window.showErrorMessage(`Redline could not forget: ${cliMessage(err)}`);
        } finally {
            if (pausedHere) {
                await this.session.execute(CMD_RESUME).then(
                    (p) => p && this.status.show(p),
                    () => undefined,
                );
            }
        }
    }

    async exportEdits(): Promise<void> {
        type Format = vscode.QuickPickItem & { format: 'sft' | 'preference' };
        const format = await vscode.window.showQuickPick<Format>(
            [
                {
                    label: 'sft',
                    description: 'prompt / completion',
                    detail: 'Each settled suggestion with the text as you left it.',
                    format: 'sft',
                },
                {
                    label: 'preference',
                    description: 'prompt / chosen / rejected',
                    detail: 'Your version (chosen) against the suggestion (rejected); unchanged ones are skipped.',
                    format: 'preference',
                },
            ],
            { title: 'Redline: export my edits', placeHolder: 'Format of the JSON Lines file' },
        );
        if (!format) {
            return;
        }
        const folder = vscode.workspace.workspaceFolders?.find((f) => f.uri.scheme === 'file')?.uri;
        const name = `redline-${format.format}.jsonl`;
        const target = await vscode.window.showSaveDialog({
            title: 'Redline: export my edits',
            saveLabel: 'Export',
            defaultUri: folder ? vscode.Uri.joinPath(folder, name) : undefined,
            filters: { 'JSON Lines': ['jsonl'], 'All files': ['*'] },
        });
        if (!target) {
            return;
        }
        if (target.scheme !== 'file') {
            void vscode.window.showErrorMessage(
                `Redline exports to files on the machine that runs its server, not to ${target.scheme}: locations.`,
            );
            return;
        }
        try {
            const out = await vscode.window.withProgress(
                { location: vscode.ProgressLocation.Notification, title: 'Redline: exporting…' },
                () => this.cli.server(['export', target.fsPath, '--format', format.format], 600_000),
            );
            const open = 'Open';
            const choice = await vscode.window.showInformationMessage(
                `Redline: ${lastLine(out.stdout) || `exported to ${target.fsPath}`}.`,
                open,
            );
            if (choice === open) {
                await vscode.window.showTextDocument(target);
            }
        } catch (err) {
            void vscode.window.showErrorMessage(`Redline could not export: ${cliMessage(err)}`);
        }
    }

    async openDataFolder(): Promise<void> {
        let dir: string;
        try {
            dir = await this.cli.dataHome();
        } catch (err) {
            void vscode.window.showErrorMessage(`Redline could not find its data folder: ${cliMessage(err)}`);
            return;
        }
        // The OS's file manager only helps where the server runs on this machine: a desktop window
        // that is not remote. Elsewhere (code-server, SSH, containers) say where it is.
        const local = vscode.env.uiKind === vscode.UIKind.Desktop && !vscode.env.remoteName;
        if (local && (await vscode.env.openExternal(vscode.Uri.file(dir)).then(undefined, () => false))) {
            return;
        }
        const copy = 'Copy path';
        const choice = await vscode.window.showInformationMessage(
            `Redline's data folder${local ? '' : ' (on the machine that runs the server)'}: ${dir}`,
            copy,
        );
        if (choice === copy) {
            await vscode.env.clipboard.writeText(dir);
        }
    }
}

function lastLine(text: string): string {
    const lines = text
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter(Boolean);
    return lines[lines.length - 1] ?? '';
}

function cliMessage(err: unknown): string {
    return err instanceof CliError ? err.message : message(err);
}
