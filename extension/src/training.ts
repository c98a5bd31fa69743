// A retraining's progress as a cancellable notification, and in the status bar.
//
// The server reports a retraining twice: as LSP work-done progress on a token it creates, and in the
// status payload's `training`. vscode-languageclient shows server-created work-done progress only as a
// silent status-bar spinner (ProgressLocation.Window: no notification, no cancel button), so the
// extension takes those tokens over (ServerSession forwards them here) and shows a notification whose
// Cancel runs the server's redline.cancelRetrain. The status payload drives the same notification
// (polled while a run is on), so a run shows even when no progress message gets through.

import * as vscode from 'vscode';
import { isTrainingRunning, runningTraining, trainingLabel } from './format';
import { CMD_CANCEL_RETRAIN, CMD_STATUS, isStatusPayload, type CancelRetrainResult, type TrainingStatus } from './protocol';
import { type StatusBar } from './status';

export interface ServerCommands {
    command(command: string, args?: unknown[]): Promise<unknown>;
    readonly running: boolean;
}

const POLL_MS = 2000;

export class TrainingProgress implements vscode.Disposable {
    private open: { report: (text: string) => void; close: () => void } | undefined;
    private lastText = '';
    private title = 'Redline: retraining';
    /** The user cancelled this run: no new notification for it. */
    private cancelled = false;
    /** A run is on: log how it ended when it ends (the server says so to the user itself). */
    private watching = false;
    private lastProgressAt = 0;
    private timer: NodeJS.Timeout | undefined;
    private readonly subscription: vscode.Disposable;

    constructor(
        private readonly status: StatusBar,
        private readonly server: ServerCommands,
        private readonly output: vscode.LogOutputChannel,
    ) {
        this.subscription = status.onDidChange((payload) => this.update(payload.training ?? null));
    }

    /** LSP work-done progress of a server-created token: begin / report / end. */
    onWorkDone(value: { kind: string; title?: string; message?: string; percentage?: number }): void {
        this.lastProgressAt = Date.now();
        if (value.kind === 'begin' && value.title) {
            this.title = value.title;
        }
        const previous = runningTraining(this.status.payload.training);
        if (value.kind === 'end') {
            // The server has recorded how the run ended before it ends the progress: ask it.
            void this.refresh().then((ok) => {
                if (!ok && isTrainingRunning(this.status.payload.training)) {
                    this.status.training({ state: 'done', message: value.message ?? '', percent: null });
                }
            });
            return;
        }
        if (value.kind === 'begin') {
            this.cancelled = false;
        }
        this.status.training({
            ...previous,
            state: 'running',
            message: value.message ?? previous?.message ?? '',
            percent: typeof value.percentage === 'number' ? value.percentage : null,
        });
    }

    /** redline.retrain said it started a run: show it (in case no work-done progress arrives). */
    async started(): Promise<void> {
        this.cancelled = false;
        await this.refresh();
    }

    /** Show the run as the server last described it. */
    private update(training: TrainingStatus | null): void {
        const run = runningTraining(training);
        if (!run) {
            if (this.watching && training) {
                this.output.info(`Retraining ${training.state}: ${training.message}`);
            }
            this.watching = false;
            this.cancelled = false;
            this.stopPolling();
            this.close();
            return;
        }
        this.watching = true;
        this.startPolling();
        if (!this.open && !this.cancelled) {
            this.show();
        }
        const text = run.message
            ? `${run.message}${typeof run.percent === 'number' ? ` (${Math.round(run.percent)}%)` : ''}`
            : trainingLabel(run);
        if (this.open && text !== this.lastText) {
            this.lastText = text;
            this.open.report(text);
        }
    }

    private show(): void {
        let close!: () => void;
        const done = new Promise<void>((resolve) => (close = resolve));
        let report: vscode.Progress<{ message?: string }> | undefined;
        let pending = '';
        const open = {
            report: (message: string) => (report ? report.report({ message }) : (pending = message)),
            close,
        };
        this.open = open;
        this.lastText = '';
        void vscode.window.withProgress(
            { location: vscode.ProgressLocation.Notification, title: this.title, cancellable: true },
            (progress, token) => {
                token.onCancellationRequested(() => {
                    if (this.open === open) {
                        void this.cancel();
                    }
                });
                report = progress;
                if (pending) {
                    progress.report({ message: pending });
                }
                return done;
            },
        );
    }

    private close(): void {
        const open = this.open;
        this.open = undefined;
        this.lastText = '';
        open?.close();
    }

    /** Stop the run (the notification's Cancel, or the "Cancel retraining" command). */
    async cancel(): Promise<boolean> {
        this.cancelled = true;
        this.close();
        try {
            const result = (await this.server.command(CMD_CANCEL_RETRAIN)) as CancelRetrainResult | undefined;
            this.output.info(`Retraining cancel requested: ${JSON.stringify(result)}`);
            void this.refresh();
            return !!result?.cancelled;
        } catch (err) {
            this.output.warn(`Cancelling the retraining failed: ${err instanceof Error ? err.message : String(err)}`);
            return false;
        }
    }

    /** Ask the server for its status payload; false when it could not be asked. */
    async refresh(): Promise<boolean> {
        if (!this.server.running) {
            return false;
        }
        try {
            const payload = await this.server.command(CMD_STATUS);
            if (isStatusPayload(payload)) {
                this.status.show(payload);
                return true;
            }
        } catch {
            // the server is going away; its next start says how things are
        }
        return false;
    }

    /** While a run is on and work-done progress is quiet, poll the status payload. */
    private startPolling(): void {
        if (this.timer) {
            return;
        }
        this.timer = setInterval(() => {
            if (Date.now() - this.lastProgressAt >= POLL_MS) {
                void this.refresh();
            }
        }, POLL_MS);
    }

    private stopPolling(): void {
        if (this.timer) {
            clearInterval(this.timer);
            this.timer = undefined;
        }
    }

    dispose(): void {
        this.subscription.dispose();
        this.stopPolling();
        this.close();
    }
}
