// Scala DStream reference jobs (compiled with the scala-compiler jar shipped in pyspark, run with spark-submit).
// usage: spark-submit --master local[2] --class RefJobs refjobs.jar JOB INPUT_JSON OUTPUT_JSONL CHECKPOINT_DIR
import java.io.{File, FileWriter}
import java.util.concurrent.ConcurrentHashMap
import scala.jdk.CollectionConverters._
import com.fasterxml.jackson.databind.ObjectMapper
import org.apache.spark.{SparkConf, SparkContext}
import org.apache.spark.rdd.RDD
import org.apache.spark.streaming._
import org.apache.spark.streaming.dstream.DStream
import org.apache.spark.streaming.scheduler.{StreamingListener, StreamingListenerOutputOperationCompleted}

object Collect {
  // batch time (ms) -> number of input records (output op on the raw input stream; used as the batch clock)
  val clock = new ConcurrentHashMap[Long, Long]()
  // job name -> batch time (ms) -> records rendered as a JSON array
  val results = new ConcurrentHashMap[String, ConcurrentHashMap[Long, String]]()

  def jsonValue(v: Any): String = v match {
    case s: String => "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\""
    case i: Int => i.toString
    case l: Long => l.toString
    case other => throw new IllegalArgumentException("unexpected value " + other)
  }
  def render(recs: Seq[(String, Any)]): String =
    recs.sortBy { case (k, v) => (k, v.toString) }
      .map { case (k, v) => "[" + jsonValue(k) + "," + jsonValue(v) + "]" }.mkString("[", ",", "]")

  // batch time (ms) -> failure reason of an output operation in that batch (first line)
  val failures = new ConcurrentHashMap[Long, String]()

  def put(job: String, t: Time, recs: Seq[(String, Any)]): Unit = {
    results.computeIfAbsent(job, _ => new ConcurrentHashMap[Long, String]()).put(t.milliseconds, render(recs))
  }
}

object RefJobs {
  val TotalBatches = 20

  def main(args: Array[String]): Unit = {
    val Array(job, inputPath, outPath, ckpt) = args
    val mapper = new ObjectMapper()
    val root = mapper.readTree(new File(inputPath))
    val intervalMs = root.get("interval_ms").asLong()
    val batches: Seq[Seq[(String, Int)]] = root.get("batches").elements().asScala.map { b =>
      b.elements().asScala.map(r => (r.get(0).asText(), r.get(1).asInt())).toSeq
    }.toSeq

    val sc = new SparkContext(new SparkConf().setMaster("local[2]").setAppName("ref-" + job)
      .set("spark.ui.enabled", "false"))
    sc.setLogLevel("WARN")
    val ssc = new StreamingContext(sc, Milliseconds(intervalMs))
    ssc.checkpoint(ckpt)
    val iv = Milliseconds(intervalMs)

    val queue = scala.collection.mutable.Queue[RDD[(String, Int)]]()
    batches.foreach(b => queue.enqueue(sc.parallelize(b, 2)))
    val stream = ssc.queueStream(queue, oneAtATime = true)

    val jobNames: Seq[String] = job match {
      case "scala_update_state_by_key" =>
        stream.updateStateByKey((vs: Seq[Int], old: Option[Int]) => {
          val s = old.getOrElse(0) + vs.sum
          if (s == 0) None else Some(s)
        }).foreachRDD((rdd, t) => Collect.put("scala_update_state_by_key", t, rdd.collect().toSeq))
        Seq(job)
      case "scala_reduce_by_key_and_window_inv" =>
        stream.reduceByKeyAndWindow(_ + _, _ - _, iv * 3, iv)
          .foreachRDD((rdd, t) => Collect.put("scala_reduce_by_key_and_window_inv", t, rdd.collect().toSeq))
        Seq(job)
      case "scala_reduce_by_key_and_window_inv_filter" =>
        stream.reduceByKeyAndWindow(_ + _, _ - _, iv * 3, iv, sc.defaultParallelism,
            (kv: (String, Int)) => kv._2 != 0)
          .foreachRDD((rdd, t) => Collect.put("scala_reduce_by_key_and_window_inv_filter", t, rdd.collect().toSeq))
        Seq(job)
      case "scala_reduce_by_key_and_window_inv_slide2" =>
        stream.reduceByKeyAndWindow(_ + _, _ - _, iv * 4, iv * 2)
          .foreachRDD((rdd, t) => Collect.put("scala_reduce_by_key_and_window_inv_slide2", t, rdd.collect().toSeq))
        Seq(job)
      case "scala_reduce_by_key_and_window_inv_w5" =>
        stream.reduceByKeyAndWindow(_ + _, _ - _, iv * 5, iv)
          .foreachRDD((rdd, t) => Collect.put("scala_reduce_by_key_and_window_inv_w5", t, rdd.collect().toSeq))
        Seq(job)
      case "scala_reduce_by_key_and_window" =>
        stream.reduceByKeyAndWindow((a: Int, b: Int) => a + b, iv * 3, iv)
          .foreachRDD((rdd, t) => Collect.put("scala_reduce_by_key_and_window", t, rdd.collect().toSeq))
        Seq(job)
      case "scala_count_by_window" =>
        stream.countByWindow(iv * 3, iv)
          .foreachRDD((rdd, t) => Collect.put("scala_count_by_window", t, rdd.collect().toSeq.map(c => ("count", c))))
        Seq(job)
      case "map_with_state" | "map_with_state_ckpt1s" =>
        // data call: state = running sum, emit (key, newSum: Int)
        // timeout call (value == None, state.isTimingOut): emit (key, "timeout:" + lastSum: String)
        val spec = StateSpec.function((key: String, value: Option[Int], state: State[Int]) => {
          if (state.isTimingOut()) {
            (key, "timeout:" + state.get()): (String, Any)
          } else {
            val s = state.getOption().getOrElse(0) + value.get
            state.update(s)
            (key, s): (String, Any)
          }
        }).timeout(iv * 3)
        val mapped = stream.mapWithState(spec)
        if (job == "map_with_state_ckpt1s") mapped.checkpoint(iv)
        val mj = job
        val sj = job + "_snapshots"
        mapped.foreachRDD((rdd, t) => Collect.put(mj, t, rdd.collect().toSeq))
        mapped.stateSnapshots().foreachRDD((rdd, t) => Collect.put(sj, t, rdd.collect().toSeq))
        Seq(mj, sj)
      case other => throw new IllegalArgumentException("unknown job " + other)
    }
    stream.foreachRDD((rdd, t) => { Collect.clock.put(t.milliseconds, rdd.count()); () })

    ssc.addStreamingListener(new StreamingListener {
      override def onOutputOperationCompleted(e: StreamingListenerOutputOperationCompleted): Unit =
        e.outputOperationInfo.failureReason.foreach { r =>
          Collect.failures.putIfAbsent(e.outputOperationInfo.batchTime.milliseconds, r.linesIterator.next())
        }
    })
    ssc.start()
    val deadline = System.currentTimeMillis() + 240000
    var done = false
    while (!done && System.currentTimeMillis() < deadline) {
      Thread.sleep(500)
      val times = Collect.clock.keySet().asScala
      if (times.size >= TotalBatches) {
        val t0 = times.min
        val last = t0 + (TotalBatches - 1) * intervalMs
        val outs = jobNames.map(j => Collect.results.getOrDefault(j, new ConcurrentHashMap[Long, String]()))
        done = times.max >= last && (job.endsWith("slide2") || outs.forall(_.containsKey(last)) ||
          Collect.failures.containsKey(last))
      }
    }
    Thread.sleep(1500)
    ssc.stop(stopSparkContext = true, stopGracefully = false)
    require(done, "timed out")

    val t0 = Collect.clock.keySet().asScala.min
    for ((t, c) <- Collect.clock.asScala.toSeq.sortBy(_._1)) {
      val b = ((t - t0) / intervalMs).toInt
      val exp = if (b < batches.size) batches(b).size else 0
      require((t - t0) % intervalMs == 0 && c == exp, s"misaligned input batch $b: $c vs $exp")
    }
    val w = new FileWriter(outPath, true)
    for (j <- jobNames) {
      val m = Collect.results.getOrDefault(j, new ConcurrentHashMap[Long, String]()).asScala
      val idx = m.toSeq.sortBy(_._1).flatMap { case (t, recs) =>
        require((t - t0) % intervalMs == 0)
        val b = ((t - t0) / intervalMs).toInt
        if (b < TotalBatches) {
          w.write("{\"job\": \"" + j + "\", \"batch\": " + b + ", \"records\": " + recs + "}\n"); Some(b)
        } else None
      }
      println(s"done $j batches with output: " + idx.mkString("[", ", ", "]"))
    }
    w.close()
    val fw = new FileWriter(outPath.stripSuffix(".jsonl") + ".errors.jsonl", true)
    for ((t, r) <- Collect.failures.asScala.toSeq.sortBy(_._1); b = ((t - t0) / intervalMs).toInt if b < TotalBatches) {
      fw.write("{\"job\": \"" + job + "\", \"batch\": " + b + ", \"error\": " + Collect.jsonValue(r) + "}\n")
      println(s"FAILED batch $b: $r")
    }
    fw.close()
  }
}
