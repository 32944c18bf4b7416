import org.apache.spark.streaming._
import org.apache.spark.rdd.RDD
val ssc = new StreamingContext(sc, Seconds(1))
ssc.checkpoint("/tmp/flintlock-spark-shell-smoke/ckpt")
val q = scala.collection.mutable.Queue[RDD[(String, Int)]](sc.parallelize(Seq(("a", 1), ("b", 2)), 2), sc.parallelize(Seq(("a", 3)), 2))
val spec = StateSpec.function((k: String, v: Option[Int], s: State[Int]) => { val n = s.getOption().getOrElse(0) + v.getOrElse(0); if (!s.isTimingOut()) s.update(n); (k, n) }).timeout(Seconds(3))
val m = ssc.queueStream(q, oneAtATime = true).mapWithState(spec)
m.foreachRDD((rdd, t) => println("SHELLTEST " + t + " " + rdd.collect().sorted.mkString(",")))
ssc.start()
ssc.awaitTerminationOrTimeout(4500)
ssc.stop(stopSparkContext = true, stopGracefully = false)
System.exit(0)
