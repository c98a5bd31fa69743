// The status bar item: what the server last said about itself (`redline/status`): its state, the
// active model version (short) and a retraining's progress; the tooltip lists the served policies with
// their live bandit figures. A click pauses or resumes suggestions.

import * as vscode from 'vscode';
import { policyLines, runningTraining, shortVersion, trainingLabel } from './format';
import { type State, type StatusPayload, type TrainingStatus } from './protocol';

const ICONS: Record<State, string> = {
    starting: '$(loading~spin)',
    ready: '$(pencil)',
    thinking: '$(sync~spin)',
    paused: '$(debug-pause)',
    error: '$(error)',
};

const CLICK_HINT: Record<State, string> = {
    starting: 'Click to pause suggestions.',
    ready: 'Click to pause suggestions.',
    thinking: 'Click to pause suggestions.',
    paused: 'Click to resume suggestions.',
    error: 'Click to show the output.',
};

export class StatusBar implements vscode.Disposable {
    private readonly item: vscode.StatusBarItem;
    private current: StatusPayload = { state: 'starting', message: 'Starting the server', model: null };
    private readonly changed = new vscode.EventEmitter<StatusPayload>();
    /** Fires with every payload shown (the server's or the extension's own). */
    readonly onDidChange = this.changed.event;

    constructor(
        private readonly toggleCommand: string,
        private readonly showOutputCommand: string,
    ) {
        this.item = vscode.window.createStatusBarItem('redline.status', vscode.StatusBarAlignment.Right, 100);
        this.item.name = 'Redline';
        this.render();
        this.item.show();
    }

    get state(): State {
        return this.current.state;
    }

    /** The last payload, version and training included. */
    get payload(): StatusPayload {
        return this.current;
    }

    show(payload: StatusPayload): void {
        this.current = {
            ...payload,
            message: payload.message ?? '',
            model: payload.model ?? null,
            // A payload without these fields (the extension's own) keeps what the server said last.
            version: payload.version !== undefined ? payload.version : this.current.version,
            training: payload.training !== undefined ? payload.training : this.current.training,
        };
        this.render();
        this.changed.fire(this.current);
    }

    /** A retraining's progress heard from elsewhere than a status payload (LSP work-done progress). */
    training(training: TrainingStatus | null): void {
        this.show({ ...this.current, training });
    }

    starting(message = 'Starting the server'): void {
        this.show({ state: 'starting', message, model: null, version: null, training: null });
    }

    error(message: string): void {
        this.show({ state: 'error', message, model: this.current.model, training: null });
    }

    dispose(): void {
        this.item.dispose();
        this.changed.dispose();
    }

    private render(): void {
        const { state, message, model, version, training } = this.current;
        const short = state === 'error' ? undefined : shortVersion(version?.id ?? model);
        const lines = [`Redline: ${state}${message ? ` (${message})` : ''}`];
        const running = runningTraining(training);
        if (running) {
            this.item.text = `$(sync~spin) Redline: ${trainingLabel(running)}`;
            lines.push(`Retraining${running.message ? `: ${running.message}` : ''}`);
        } else {
            this.item.text = `${ICONS[state]} Redline${short ? ` ${short}` : ''}`;
            if (training && training.state !== 'running' && training.message) {
                lines.push(`Last retraining (${training.state}): ${training.message}`);
            }
        }
        if (version) {
            lines.push(...policyLines(version));
        } else if (model) {
            lines.push(`Model: ${model}`);
        }
        lines.push(CLICK_HINT[state]);
        this.item.tooltip = lines.join('\n');
        this.item.command = state === 'error' ? this.showOutputCommand : this.toggleCommand;
        this.item.backgroundColor =
            state === 'error' ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
        this.item.accessibilityInformation = { label: `Redline ${state}`, role: 'button' };
    }
}
