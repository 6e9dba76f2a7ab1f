use crate::rules::{Finding, ObjectContext};

rule! {
    /// Job selector set without manualSelector
    ///
    /// The API server generates a Job's selector from a unique controller-uid label. A selector written by hand is
    /// refused unless spec.manualSelector is true, and then it risks selecting pods of other Jobs.
    ///
    /// Fix: Remove spec.selector and let the API server generate it (or set spec.manualSelector: true if you really
    /// manage the labels).
    "workload/job-selector", Error, Object(check)
}

fn check(context: &ObjectContext<'_>, out: &mut Vec<Finding>) {
    let Some((_, manual)) = super::written_job_selector(context) else { return };
    let cron_job = context.info.gvk.kind == "CronJob";
    // A CronJob's jobs always get generated selectors: one written in its template is refused.
    if manual && !cron_job {
        return;
    }
    let (selector_path, span) = super::selector_place(context);
    let message = if cron_job {
        format!("CronJob sets {selector_path}, which the API server refuses")
    } else {
        format!("Job sets {selector_path} without manualSelector: true")
    };
    out.push(Finding::new(&RULE, span, message).label("the API server generates this selector").path(selector_path));
}
