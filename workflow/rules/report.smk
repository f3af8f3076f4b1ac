# Figures and tables for `snakemake --report report.html` (after a run): per model and test
# dataset a slice figure, the evaluation table and plot of the run, the provenance page.
# The training curves are marked for the report in train.smk.


report: "../report/workflow.rst"


rule report_slices:
    """Image, affinities, each decoder's segmentation and the ground truth on a few slices."""
    input:
        volume=volume("{dataset}"),
        prediction=prediction("{model}", "{dataset}"),
        segmentations=lambda wc: [
            segmentation(wc.model, d, wc.dataset) for d in PLAN.settings.decoders
        ],
    output:
        report(
            slices_figure("{model}", "{dataset}"),
            caption="../report/slices.rst",
            category="Segmentations",
            subcategory="{model}",
            labels={"model": "{model}", "dataset": "{dataset}"},
        ),
    log:
        "logs/report_slices/{model}/{dataset}.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        decoders=list(PLAN.settings.decoders),
    script:
        "../scripts/report_slices.py"


rule report_evaluation:
    """VOI split/merge, adapted Rand error and object counts of every evaluation, as a table and plot."""
    input:
        [evaluation(*run) for run in PLAN.evaluated_runs()],
    output:
        csv=report(
            report_file("evaluation.csv"),
            caption="../report/evaluation.rst",
            category="Evaluation",
            labels={"content": "table (CSV, download)"},
        ),
        html=report(
            report_file("evaluation.html"),
            caption="../report/evaluation.rst",
            category="Evaluation",
            labels={"content": "table"},
        ),
        plot=report(
            report_file("evaluation.png"),
            caption="../report/evaluation_plot.rst",
            category="Evaluation",
            labels={"content": "plot"},
        ),
    log:
        "logs/report_evaluation/evaluation.log",
    conda:
        "../../envs/cpu.yaml"
    params:
        runs=PLAN.evaluated_runs(),
    script:
        "../scripts/report_evaluation.py"


rule report_provenance:
    """The provenance each output of the run records, as one page."""
    input:
        PLAN.run_outputs(),
    output:
        report(
            report_file("provenance.html"),
            caption="../report/provenance.rst",
            category="Provenance",
            labels={"content": "every output"},
        ),
    log:
        "logs/report_provenance/provenance.log",
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/report_provenance.py"
